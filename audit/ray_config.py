"""Settings of an audit on Ray (no Ray import: the command line reads them without Ray)."""

from __future__ import annotations

from dataclasses import dataclass

from oracle.errors import OracleInputError
from oracle.fields import check_fields, setting


@dataclass
class RayConfig:
    """Where the audit runs and how big its pool of engine actors is."""

    ray_address: str | None = setting(
        None,
        "Ray cluster to join (implies --ray): 'auto' (the cluster `ray start` began on this "
        "machine), HOST:PORT, or ray://HOST:10001; none starts a local Ray for this audit.",
    )
    ray_cpus: int | None = setting(
        None, "CPUs of the local Ray this audit starts (default: every core).", ge=1
    )
    ray_actors: int = setting(1, "Engine actors in the pool (each holds one engine).", ge=1)
    ray_threads: int = setting(
        1, "Torch threads per actor; each actor reserves as many CPUs.", ge=1
    )
    ray_gpus: float = setting(0.0, "GPUs each actor reserves (1 for a vLLM engine on a GPU).", ge=0)
    ray_runtime_env: dict | None = setting(
        None,
        "Ray runtime environment for the workers (e.g. {working_dir: models}: the oracle "
        "shipped with the job, --oracle then relative to it).",
    )

    def __post_init__(self) -> None:
        check_fields(self)
        if self.ray_cpus is not None and not self.local:
            raise OracleInputError(
                "--ray-cpus sizes the local Ray an audit starts; a cluster's CPUs are set by "
                "`ray start --num-cpus` on each machine"
            )

    @property
    def local(self) -> bool:
        """Whether the audit starts a Ray of its own (no cluster address given)."""
        return self.ray_address in (None, "", "local")
