"""REST routes for layers (secret key): a placeholder until the capability lands."""

from starlette.routing import Route

routes: list[Route] = []
