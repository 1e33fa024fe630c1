"""The recommenders, by name. Each is fit on ``Interactions`` and testable alone (see ``base.py``)."""

from __future__ import annotations

from userloop.recommend.models.als import ALS
from userloop.recommend.models.base import Candidates, Recommender
from userloop.recommend.models.ease import EASE
from userloop.recommend.models.itemsim import Content, Cooccurrence, Cosine, CrossType, ItemKNN
from userloop.recommend.models.people import People
from userloop.recommend.models.popular import Interest, Latest, Popular, Trending

RECOMMENDERS: dict[str, type[Recommender]] = {
    cls.name: cls
    for cls in (Latest, Popular, Trending, Interest, Cooccurrence, Cosine, Content, ItemKNN, CrossType, ALS, EASE, People)
}
# candidates for the feed's personal list ("cf"): the one with the best validation NDCG@10 is used
PERSONAL_CF = ("itemknn", "als", "ease", "content")

__all__ = ["RECOMMENDERS", "PERSONAL_CF", "Candidates", "Recommender"]
