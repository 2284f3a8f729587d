"""One log line per gRPC call: request id, method, claim UIDs, outcome, duration.

Like the upstream Go helper's logging interceptor (k8s.io/dynamic-resource-
allocation kubeletplugin), each call gets a sequential request id; a call
that succeeds is logged at debug level, a failed one at error level. For the
DRA methods a call also fails when some of its claims got an error: the
kubelet then fails those pods' preparation, and this line says why.

Unary calls are logged, whether their servicer method is a coroutine (run
on the event loop) or a plain function (run on the server's thread pool);
streaming calls (the health service's Watch) are passed through.

Code that serves a call can add its request id to its own log lines with
current_request_id() (coroutines only: threads the call hands work to do
not inherit it).

A request that does not parse is answered INVALID_ARGUMENT here, and logged
like any failed call: gRPC itself would answer UNKNOWN, which says "a bug in
the server" when the bug is in the caller.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import itertools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeAlias, cast

import grpc

log = logging.getLogger(__name__)

# Claim UIDs come from the caller: bound what one log line may carry.
MAX_LOGGED_CLAIMS = 20
MAX_LOGGED_CHARS = 100

Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"

_request_id: contextvars.ContextVar[int | None] = contextvars.ContextVar("request_id", default=None)


def current_request_id() -> int | None:
    """The id of the call being served by the running coroutine, if any."""
    return _request_id.get()


if TYPE_CHECKING:
    Interceptor = grpc.aio.ServerInterceptor[Any, Any]
else:  # not subscriptable at run time
    Interceptor = grpc.aio.ServerInterceptor


class RequestLog(Interceptor):
    def __init__(self, server: str) -> None:
        self._server = server
        self._ids = itertools.count(1)

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any]]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any]:
        handler = await continuation(handler_call_details)
        behavior = None if handler is None else handler.unary_unary
        if behavior is None:
            return handler
        method = handler_call_details.method
        wrapped: Callable[[Any, Any], Any]
        if inspect.iscoroutinefunction(behavior):
            wrapped = self._logged_coroutine(behavior, method)
        else:
            wrapped = self._logged_function(behavior, method)
        return grpc.unary_unary_rpc_method_handler(
            wrapped,
            request_deserializer=_tolerant(handler.request_deserializer),
            response_serializer=handler.response_serializer,
        )

    def _logged_coroutine(
        self, behavior: Callable[..., Awaitable[Any]], method: str
    ) -> Callable[[Any, Context], Awaitable[Any]]:
        async def logged(request: Any, context: Context) -> Any:
            call = _Call(next(self._ids), self._server, method, request)
            _request_id.set(call.fields["request_id"])  # this call's task only
            try:
                if isinstance(request, _Undecodable):
                    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.problem)
                response = await behavior(request, context)
            except asyncio.CancelledError:
                call.cancelled()
                raise
            except Exception as exc:
                call.failed(exc, context)
                raise
            call.done(response)
            return response

        return logged

    def _logged_function(
        self, behavior: Callable[..., Any], method: str
    ) -> Callable[[Any, grpc.ServicerContext], Any]:
        def logged(request: Any, context: grpc.ServicerContext) -> Any:
            call = _Call(next(self._ids), self._server, method, request)
            try:
                if isinstance(request, _Undecodable):
                    context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.problem)
                response = behavior(request, context)
            except Exception as exc:
                # The aio server's context for plain functions has code() too.
                call.failed(exc, cast(Context, context))
                raise
            call.done(response)
            return response

        return logged


class _Undecodable:
    """Stands for a request that did not parse."""

    def __init__(self, problem: str) -> None:
        self.problem = problem


def _tolerant(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any]:
    def deserialize(data: bytes) -> Any:
        if deserializer is None:
            return data
        try:
            return deserializer(data)
        except Exception as exc:
            return _Undecodable(f"the request does not parse: {exc}")

    return deserialize


class _Call:
    """The log fields of one call, from its start to its one log line."""

    def __init__(self, request_id: int, server: str, method: str, request: Any) -> None:
        self._start = time.perf_counter()
        self.fields: dict[str, Any] = {"request_id": request_id, "server": server, "method": method}
        claims = getattr(request, "claims", None)
        if claims is not None:
            self.fields["claims"] = _shortened([c.uid for c in claims])

    def done(self, response: Any) -> None:
        failed = _claim_errors(response)
        if failed:
            self.fields["claim_errors"] = failed
            self._end(logging.ERROR, "CLAIM_ERRORS")
        else:
            self._end(logging.DEBUG, "OK")

    def failed(self, exc: Exception, context: Context) -> None:
        code = cast(grpc.StatusCode | None, context.code())
        if code is None:  # not an abort: gRPC answers UNKNOWN, a bug to fix
            log.error("request raised", exc_info=exc, extra=self.fields)
            code = grpc.StatusCode.UNKNOWN
        self.fields["details"] = context.details() or str(exc)
        self._end(logging.ERROR, code.name)

    def cancelled(self) -> None:
        self._end(logging.ERROR, grpc.StatusCode.CANCELLED.name)

    def _end(self, level: int, outcome: str) -> None:
        self.fields["outcome"] = outcome
        self.fields["duration_ms"] = round((time.perf_counter() - self._start) * 1000, 3)
        log.log(level, "request done" if outcome == "OK" else "request failed", extra=self.fields)


def _claim_errors(response: Any) -> dict[str, str]:
    """uid -> error of the claims answered with an error (DRA responses only)."""
    answers = getattr(response, "claims", None)
    if answers is None:
        return {}
    failed = {}
    for uid, answer in answers.items():
        if answer.error:
            failed[_shortened_text(uid)] = answer.error
            if len(failed) >= MAX_LOGGED_CLAIMS:
                break
    return failed


def _shortened(uids: list[str]) -> list[str]:
    shown = [_shortened_text(u) for u in uids[:MAX_LOGGED_CLAIMS]]
    if len(uids) > MAX_LOGGED_CLAIMS:
        shown.append(f"... {len(uids) - MAX_LOGGED_CLAIMS} more")
    return shown


def _shortened_text(text: str) -> str:
    if len(text) <= MAX_LOGGED_CHARS:
        return text
    return f"{text[:MAX_LOGGED_CHARS]}... ({len(text)} characters)"
