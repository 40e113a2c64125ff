"""Whether a loaded model can still run: a hook the decode path calls, knowing nothing of RPC.

    hook.check()          before touching the context (a decode, clearing the cache): raises
                          a RunFailed kind, one line, once the model cannot run any more
    hook.after_decode()   right after each llama_decode, before its status is read: raises
                          when the decode's results are not the model's (a server lost in it)
    hook.unusable()       why the model cannot run any more (one line), or None
    hook.can_free()       whether freeing the model is safe (stock ggml-rpc aborts the
                          process on a command to a dead server)

A local model is always alive (LocalModel). Layers on rpc-servers (RpcLiveness): ggml-rpc
aborts the process on a command to a dead server, so each step checks the connections
llama.cpp holds first, and after a decode asks the patched ggml-rpc which servers it lost
inside it (moeviz/llama/rpc.py has the mechanics).
"""
from __future__ import annotations

from typing import Protocol

from ..llama import rpc as rpc_backend


class Liveness(Protocol):
    def check(self) -> None: ...
    def after_decode(self) -> None: ...
    def unusable(self) -> str | None: ...
    def can_free(self) -> bool: ...


class LocalModel:
    """Every layer in this process: nothing can go away."""

    def check(self) -> None:
        pass

    def after_decode(self) -> None:
        pass

    def unusable(self) -> str | None:
        return None

    def can_free(self) -> bool:
        return True


class RpcLiveness:
    """Layers on rpc-servers: lost once any of them has gone, and lost for good."""

    def __init__(self, servers: list[str]):
        self.servers = list(servers)
        self._lost: rpc_backend.RpcServerLost | None = None

    def check(self) -> None:
        if self._lost is None:
            try:
                rpc_backend.check_alive(self.servers)
            except rpc_backend.RpcServerLost as e:
                self._lost = e
                raise
        if self._lost is not None:
            ep = self._lost.endpoint   # lost inside a run: later runs say so
            raise rpc_backend.RpcServerLost(rpc_backend.lost_line(ep, earlier=True) if ep else str(self._lost),
                                            endpoint=ep)

    def after_decode(self) -> None:
        # a server went away inside this decode: ggml-rpc (patched) failed the graph
        # (rc -3) or read zeros from it; either way these results are not the model's
        if rpc_backend.lost_servers(self.servers):
            self.check()   # raises RpcServerLost naming the server

    def unusable(self) -> str | None:
        try:
            self.check()
        except rpc_backend.RpcServerLost as e:
            return e.one_line()
        return None

    def can_free(self) -> bool:
        # patched ggml-rpc skips commands to a lost server: free as usual
        return self.unusable() is None or rpc_backend.soft_failure()
