"""Everything OTA the gateway process holds, built once from settings in the app's lifespan."""

from __future__ import annotations

from gateway.db.session import Database
from gateway.identity.secrets import keystore_from_settings
from runtime.settings import Settings

from .artifacts import ArtifactStore
from .campaign_runner import CampaignRunner
from .download_links import DownloadLinks
from .signing import ManifestSigner


class OtaService:
    """:param s: settings (data dir, Kafka, the gateway URL devices use).
    :param db: the gateway's database.
    :param run_campaigns: run the campaign driver in this process."""

    def __init__(self, s: Settings, db: Database, *, run_campaigns: bool = True):
        keystore = keystore_from_settings(s)
        self.artifacts = ArtifactStore(s.root / "firmware")
        self.signer = ManifestSigner(keystore)
        self.links = DownloadLinks(keystore)
        self.base_url = s.gateway_url
        self.runner = CampaignRunner(db, s.kafka, self.links, self.base_url) if run_campaigns else None

    def start(self) -> OtaService:
        if self.runner is not None:
            self.runner.start()
        return self

    def close(self) -> None:
        if self.runner is not None:
            self.runner.stop()
