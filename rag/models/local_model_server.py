"""The child process that serves the local GGUF model: llama.cpp's OpenAI-compatible server.

Started by `rag.local_model.LocalModelServer`, never by hand. Two things differ from
`python -m llama_cpp.server`:

- weights are loaded without llama.cpp's repacking into "extra buffer types"
  (`use_extra_bufts = False`). A llama.cpp built for a CPU with AMX repacks the weights for
  AMX kernels that crash on the first answer (llama.cpp #20824); without repacking the same
  build answers. `Llama()` does not take that parameter, so the defaults it starts from are
  patched here, in this process only;
- it exits when the process that started it is gone (killed, crashed), so a model server
  is never left behind holding memory and a port. The API key arrives on standard input,
  not on the command line, where other users of the machine could read it.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time

PARENT_POLL_SECONDS = 0.5


def _load_without_repacking() -> None:
    import llama_cpp.llama_cpp as native

    default_params = native.llama_model_default_params

    def params():  # a llama_model_params struct
        value = default_params()
        value.use_extra_bufts = False
        return value

    native.llama_model_default_params = params


def _mean_pooling() -> None:
    """One vector per text, the mean of its tokens': a chat model's GGUF declares no pooling, so
    llama.cpp would answer an embeddings request with a vector per token. The server builds its
    model with `llama_cpp.Llama(...)` and passes no pooling type: the default is set here."""
    import llama_cpp

    class MeanPooled(llama_cpp.Llama):
        def __init__(self, *args, **kwargs) -> None:
            kwargs.setdefault("pooling_type", llama_cpp.LLAMA_POOLING_TYPE_MEAN)
            super().__init__(*args, **kwargs)

    llama_cpp.Llama = MeanPooled


def _exit_with_parent(parent_pid: int) -> None:
    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(PARENT_POLL_SECONDS)
        os._exit(0)  # the app is gone: nobody will ask this server anything again

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m rag.models.local_model_server", description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--n-ctx", type=int, default=4096)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--parent-pid", type=int, required=True)
    parser.add_argument("--embedding", action="store_true", help="serve /v1/embeddings (mean-pooled) too")
    args = parser.parse_args(argv)
    _exit_with_parent(args.parent_pid)
    api_key = sys.stdin.readline().strip() or None

    _load_without_repacking()
    if args.embedding:
        _mean_pooling()
    import uvicorn
    from llama_cpp.server.app import create_app
    from llama_cpp.server.settings import ModelSettings, ServerSettings

    server = ServerSettings(host="127.0.0.1", port=args.port, api_key=api_key)
    model = ModelSettings(
        model=args.model, model_alias="local", n_ctx=args.n_ctx, n_threads=args.threads,
        n_threads_batch=args.threads, embedding=args.embedding, verbose=False,
    )
    app = create_app(server_settings=server, model_settings=[model])
    uvicorn.run(app, host=server.host, port=server.port, log_level="warning")


if __name__ == "__main__":
    main()
