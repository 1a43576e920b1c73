"""All routers, under the versioned prefix."""

from fastapi import APIRouter

from .routes import health, oauth, telemetry

api_router = APIRouter(prefix="/v1")
api_router.include_router(oauth.router)
api_router.include_router(telemetry.router)

root_router = APIRouter()
root_router.include_router(health.router)
