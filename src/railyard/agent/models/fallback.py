"""A model that falls back to the next one when a request fails: for outages and rate limits.

```python
model = FallbackModel(OpenAIModel("gpt-4o"), OpenAIModel("gpt-4o-mini", base_url=backup_url))
```
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager

from railyard.agent.exceptions import FallbackExceptionGroup, ModelHTTPError
from railyard.agent.messages import ModelMessage, ModelResponse
from railyard.agent.models import (  # noqa: F401  # with names pydantic-ai's module offers too
    AgentInfo,
    KnownModelName,
    Model,
    ModelRequestParameters,
    StreamedResponse,
    infer_model,
    open_stream,
    send_request,
)
from railyard.agent.models.instrumented import InstrumentedModel  # noqa: F401  # as in pydantic-ai's module
from railyard.agent.usage import Usage

__all__ = ("FallbackModel",)


class FallbackModel(Model):
    """Ask each model in turn until one answers.

    A request that fails with an exception `fallback_on` accepts (by default any
    `ModelHTTPError`) goes to the next model; any other exception propagates at once.
    When every model has failed, a `FallbackExceptionGroup` holds their errors.
    """

    def __init__(
        self,
        default_model: Model | KnownModelName,
        *fallback_models: Model | KnownModelName,
        fallback_on: Callable[[Exception], bool] | tuple[type[Exception], ...] = (ModelHTTPError,),
    ) -> None:
        self.models: list[Model] = [infer_model(default_model), *map(infer_model, fallback_models)]
        """The models, in the order they are asked."""
        if isinstance(fallback_on, tuple):
            kinds = fallback_on
            self._fallback_on: Callable[[Exception], bool] = lambda error: isinstance(error, kinds)
        else:
            self._fallback_on = fallback_on

    def __repr__(self) -> str:
        return f"FallbackModel(models={self.models!r})"

    @property
    def model_name(self) -> str:
        """`'fallback:'` and the names of the models."""
        return "fallback:" + ",".join(model.model_name for model in self.models)

    @property
    def system(self) -> str:
        """`'fallback:'` and the systems of the models."""
        return "fallback:" + ",".join(model.system for model in self.models)

    @property
    def base_url(self) -> str | None:
        """The base URL of the first model's API, if it has one."""
        return self.models[0].base_url

    async def request(self, messages: list[ModelMessage], info: AgentInfo) -> tuple[ModelResponse, Usage]:
        """The first answer a model gives; the response names the model that gave it.

        Raises:
            FallbackExceptionGroup: every model failed with an error to fall back on.
        """
        errors: list[Exception] = []
        for model in self.models:
            try:
                return await send_request(model, messages, info)
            except Exception as error:
                if not self._fallback_on(error):
                    raise
                errors.append(error)
        raise FallbackExceptionGroup("All models from FallbackModel failed", errors)

    @asynccontextmanager
    async def request_stream(self, messages: list[ModelMessage], info: AgentInfo) -> AsyncIterator[StreamedResponse]:
        """The first model's stream that starts; a model whose stream fails to start falls back to the next.

        Once a stream has started, an error in it propagates (the answer is half given).

        Raises:
            FallbackExceptionGroup: every model failed to start its stream with an error to fall back on.
        """
        errors: list[Exception] = []
        for model in self.models:
            async with AsyncExitStack() as stack:
                try:
                    response = await stack.enter_async_context(open_stream(model, messages, info))
                except Exception as error:
                    if not self._fallback_on(error):
                        raise
                    errors.append(error)
                    continue
                yield response
                return
        raise FallbackExceptionGroup("All models from FallbackModel failed", errors)
