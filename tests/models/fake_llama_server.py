"""A stand-in for ``python -m llama_cpp.server``: same flags, a tiny OpenAI-compatible HTTP server.

Environment knobs for tests:
    FAKE_SERVER_DELAY      seconds to sleep before listening (a model load)
    FAKE_SERVER_STARTS     a file to which each start appends its pid
    FAKE_SERVER_IGNORE_TERM  set to ignore SIGTERM (tests the SIGKILL fallback)
    FAKE_SERVER_EXIT       exit at once with this code, after printing a message
    FAKE_SERVER_CRASH      set to die of SIGSEGV on the first chat request (a build the CPU cannot run)
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def main() -> None:
    parser = argparse.ArgumentParser()
    for flag in ("--model", "--model_alias", "--host", "--n_ctx", "--n_threads", "--n_threads_batch"):
        parser.add_argument(flag, required=flag in ("--model", "--model_alias"))
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    if "FAKE_SERVER_EXIT" in os.environ:
        print("fake server: failing on purpose", flush=True)
        sys.exit(int(os.environ["FAKE_SERVER_EXIT"]))
    if os.environ.get("FAKE_SERVER_STARTS"):
        with open(os.environ["FAKE_SERVER_STARTS"], "a") as fh:
            fh.write(f"{os.getpid()}\n")
    if os.environ.get("FAKE_SERVER_IGNORE_TERM"):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    time.sleep(float(os.environ.get("FAKE_SERVER_DELAY", "0")))
    alias, model_size = args.model_alias, os.path.getsize(args.model)

    class Handler(BaseHTTPRequestHandler):
        def _send(self, body: dict[str, object]) -> None:
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path != "/v1/models":
                self.send_error(404)
                return
            self._send({"object": "list", "data": [{"id": alias, "object": "model", "owned_by": "me"}]})

        def do_POST(self) -> None:
            if self.path != "/v1/chat/completions":
                self.send_error(404)
                return
            request = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
            if os.environ.get("FAKE_SERVER_CRASH"):
                print("fake server: crashing on the first request", flush=True)
                os.kill(os.getpid(), signal.SIGSEGV)
                while True:  # the signal is delivered asynchronously: answer nothing until it lands
                    time.sleep(1)
            text = f"echo: {request['messages'][-1]['content']} (model file {model_size} bytes)"
            self._send({
                "id": "chatcmpl-fake", "object": "chat.completion", "created": int(time.time()), "model": alias,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
            })

        def log_message(self, format: str, *args: object) -> None:
            print(format % args, flush=True)

    server = ThreadingHTTPServer((args.host or "127.0.0.1", args.port), Handler)
    print(f"fake server: serving {alias} on port {args.port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
