"""GET /api/v1/health: is every part of the service up? GET /api/v1/ping: is this API process answering?"""

from __future__ import annotations

from flask import Blueprint, jsonify

from app.api.auth import ANYONE, requires
from app.api.intake import free_bytes
from app.api.services import services
from app.worker.heartbeats import alive_workers

bp = Blueprint("health", __name__, url_prefix="/api/v1")


@bp.get("/health")
@requires(ANYONE)  # load balancers and monitors ask without a key; it tells no data, only what is up
def health():
    svc = services()
    mongo_ok = svc.store.ping()
    redis_ok = svc.cache.ping()
    workers = alive_workers(svc.store, svc.config.WORKER_TIMEOUT) if mongo_ok else 0
    try:
        free_mb = free_bytes(svc.config.UPLOAD_FOLDER) >> 20
    except OSError:
        free_mb = None
    disk_ok = free_mb is not None and free_mb >= svc.config.MIN_FREE_MB
    ok = mongo_ok and redis_ok and workers > 0 and disk_ok
    return jsonify(
        {
            "status": "ok" if ok else "degraded",
            "mongo": "ok" if mongo_ok else "unreachable",
            "redis": "ok" if redis_ok else "unreachable",
            "worker": "ok" if workers else "none alive",
            "workers_alive": workers,
            # uploads are refused (507) while UPLOAD_FOLDER's filesystem has less than MIN_FREE_MB free
            "disk": "ok" if disk_ok else "unknown" if free_mb is None else "low",
            "disk_free_mb": free_mb,
        }
    ), 200


@bp.get("/ping")
@requires(ANYONE)
def ping():
    """Liveness: touches nothing beyond this process, so a MongoDB or Redis outage does not fail it."""
    return jsonify({"ok": True})
