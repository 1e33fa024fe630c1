"""REST routes for persons (secret key): a placeholder until the capability lands."""

from starlette.routing import Route

routes: list[Route] = []
