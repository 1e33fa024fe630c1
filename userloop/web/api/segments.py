"""REST routes for segments (secret key): a placeholder until the capability lands."""

from starlette.routing import Route

routes: list[Route] = []
