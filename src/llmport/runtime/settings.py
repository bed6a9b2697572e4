"""Where workers run: this machine (the default) or the nodes of a Ray cluster."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class RuntimeSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LLMPORT_", extra="ignore", frozen=True)

    ray: str | None = Field(
        default=None,
        description="Place model workers on the nodes of the Ray cluster at this address "
        "(auto: the one `ray start` made on this machine); each node's budget is its "
        "llmport.memory-budget label, else its Ray memory resource. Needs llmport[ray]. "
        "By default workers run on this machine.",
    )
    ray_heartbeat_timeout: float = Field(
        default=5.0,
        gt=0,
        description="Seconds a Ray-placed worker may leave a heartbeat unanswered before "
        "its node counts as hung and its requests fail.",
    )
