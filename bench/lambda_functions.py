#!/usr/bin/env python3
"""Cold start and per-delivery figures of the Lambda functions, run as built binaries.

Each function binary is started the way Lambda starts it: with the environment of a
function and AWS_LAMBDA_RUNTIME_API pointing at a Runtime API, which this script
serves (http.server, standard library). AWS itself is a moto server started here.
The figures:

  init      process start -> the function's first `GET /invocation/next`
            (SDK clients built, configuration read, for `process` the lake key read)
  invoke    event handed over -> response posted
  rows/s    delivery rows / invoke time (process)
  peak RSS  VmHWM of the function process after the invocation

`process` runs at 1 and 2 threads (NAERDATA_THREADS): Lambda gives a function CPU in
proportion to its memory (one vCPU at 1,769 MB, six at 10,240 MB), so the two
measured points give rows/s per vCPU and the gain of a second one, and from them the
script models the throughput and the cost per million rows at each memory size. Sizes
with more vCPUs than this machine has are modelled (each further vCPU adds what the
second added), not measured.

moto stands in for S3, so the S3 reads and writes are loopback HTTP to a Python
server: the rows/s here is a floor for the function, not the figure in AWS.

Usage: lambda_functions.py --bin-dir target/release --file bench-data/...csv [--runs 3]
"""
import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import boto3

REGION = "eu-north-1"
KEY = "almenpraksis/diagnose/2026-01-01/bench.csv"

# Lambda's price per GB-second on arm64 (the template's architecture), first tier, in
# eu-north-1, eu-west-1 and us-east-1 alike; check AWS's pricing page for your region.
ARM64_USD_PER_GB_SECOND = 0.0000133334
# Memory per vCPU: Lambda allocates CPU in proportion to memory, one vCPU at 1,769 MB.
MB_PER_VCPU = 1769
MEMORY_SIZES = [512, 1024, 1769, 2048, 3008, 3538, 5307, 7076, 8845, 10240]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_moto(venv_bin):
    port = free_port()
    proc = subprocess.Popen([str(venv_bin / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            urllib.request.urlopen(url + "/moto-api/", timeout=1)
            return proc, url
        except OSError:
            time.sleep(0.1)
    proc.kill()
    sys.exit("moto did not start")


def provision(endpoint, prefix):
    kw = dict(endpoint_url=endpoint, region_name=REGION,
              aws_access_key_id="testing", aws_secret_access_key="testing")
    s3, sqs = boto3.client("s3", **kw), boto3.client("sqs", **kw)
    ddb, sm = boto3.client("dynamodb", **kw), boto3.client("secretsmanager", **kw)
    env = {}
    for role in ["landing", "lake", "receipts", "quarantine"]:
        name = f"{prefix}-{role}"
        s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": REGION})
        env[f"NAERDATA_{role.upper()}_BUCKET"] = name
    ddb.create_table(
        TableName=f"{prefix}-ledger", BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": n, "AttributeType": "S"}
                              for n in ("pk", "dataset", "received_at")],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        GlobalSecondaryIndexes=[{
            "IndexName": "by_dataset",
            "KeySchema": [{"AttributeName": "dataset", "KeyType": "HASH"},
                          {"AttributeName": "received_at", "KeyType": "RANGE"}],
            "Projection": {"ProjectionType": "ALL"}}])
    env["NAERDATA_LEDGER_TABLE"] = f"{prefix}-ledger"
    sm.create_secret(Name=f"{prefix}/lake-key",
                     SecretString=json.dumps({"version": 1, "key_hex": "5a" * 32}))
    env["NAERDATA_KEY_SECRET_ID"] = f"{prefix}/lake-key"
    env["NAERDATA_PROCESS_QUEUE_URL"] = sqs.create_queue(QueueName=f"{prefix}-process")["QueueUrl"]
    return s3, sqs, env


class RuntimeApi:
    """The Lambda Runtime API for one invocation at a time."""

    def __init__(self):
        self.event = None
        self.next_served = threading.Event()
        self.done = threading.Event()
        self.response = None
        self.ready = threading.Event()
        self.handed_over = None
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                if not self.path.endswith("/runtime/invocation/next"):
                    self.send_error(404)
                    return
                api.ready.set()
                while api.event is None:  # long poll, as Lambda does
                    time.sleep(0.001)
                body, api.event = api.event, None
                api.handed_over = time.monotonic()
                self.send_response(200)
                self.send_header("Lambda-Runtime-Aws-Request-Id", str(uuid.uuid4()))
                self.send_header("Lambda-Runtime-Deadline-Ms", str(int(time.time() * 1000) + 900_000))
                self.send_header("Lambda-Runtime-Invoked-Function-Arn",
                                 "arn:aws:lambda:eu-north-1:123456789012:function:bench")
                self.send_header("Lambda-Runtime-Trace-Id", "Root=1-00000000-000000000000000000000000")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                payload = self.rfile.read(length)
                self.send_response(202)
                self.send_header("Content-Length", "0")
                self.end_headers()
                api.response = (self.path, payload, time.monotonic())
                api.done.set()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def address(self):
        return f"127.0.0.1:{self.server.server_address[1]}"


def peak_rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def invoke_once(binary, env, event):
    """Starts the binary as a fresh function (a cold start) and invokes it once."""
    api = RuntimeApi()
    full = dict(os.environ, **env, AWS_LAMBDA_RUNTIME_API=api.address,
                AWS_LAMBDA_FUNCTION_NAME=binary.name, AWS_LAMBDA_FUNCTION_VERSION="$LATEST",
                AWS_LAMBDA_FUNCTION_MEMORY_SIZE="2048", AWS_LAMBDA_LOG_GROUP_NAME="bench",
                AWS_LAMBDA_LOG_STREAM_NAME="bench", NAERDATA_LOG="warn", RUST_LOG="warn")
    started = time.monotonic()
    proc = subprocess.Popen([str(binary)], env=full, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        if not api.ready.wait(120):
            raise RuntimeError(f"{binary.name} never asked for an event: {proc.stderr.read1().decode()}")
        init = time.monotonic() - started
        api.event = json.dumps(event).encode()
        if not api.done.wait(1800):
            raise RuntimeError(f"{binary.name} did not answer")
        path, payload, at = api.response
        if not path.endswith("/response"):
            raise RuntimeError(f"{binary.name} reported an error: {payload.decode()[:500]}")
        result = json.loads(payload or b"{}")
        if result.get("batchItemFailures"):
            raise RuntimeError(f"{binary.name} failed its message: {result}")
        return init, at - api.handed_over, peak_rss_mib(proc.pid)
    finally:
        proc.kill()
        proc.wait()
        api.server.shutdown()


def sqs_event(body):
    return {"Records": [{
        "messageId": str(uuid.uuid4()), "receiptHandle": "bench", "body": body,
        "attributes": {"ApproximateReceiveCount": "1"}, "messageAttributes": {},
        "md5OfBody": "", "eventSource": "aws:sqs", "awsRegion": REGION,
        "eventSourceARN": f"arn:aws:sqs:{REGION}:123456789012:bench"}]}


def modelled_rows_per_second(vcpus, one, gain):
    """Rows/s at `vcpus`: a fraction of one vCPU gives that share of its rate; each
    vCPU past the first adds `gain` (the measured second vCPU's share of a first)."""
    if vcpus <= 1:
        return one * vcpus
    return one * (1 + gain * (vcpus - 1))


def model(one_thread, two_threads):
    """Throughput and cost per million rows of the process function per memory size,
    from the 1- and 2-thread measurements; the cheapest size with room for the peak."""
    (one, peak1), (two, peak2) = one_thread, two_threads
    gain = two / one - 1
    print(f"\nprocess function by memory size (measured: 1 vCPU {one:,.0f} rows/s, "
          f"2 vCPUs {two:,.0f} rows/s, a second vCPU adds {gain:.0%} of the first; "
          f"arm64 at ${ARM64_USD_PER_GB_SECOND:.10f} per GB-s)")
    print(f"  {'memory MB':>9}  {'vCPUs':>5}  {'rows/s':>10}  {'s per 1M rows':>13}  "
          f"{'USD per 1M rows':>15}  {'':8}")
    best = None
    need = 2 * max(peak1, peak2)
    for mb in MEMORY_SIZES:
        vcpus = min(mb / MB_PER_VCPU, 6.0)
        r = modelled_rows_per_second(vcpus, one, gain)
        secs = 1e6 / r
        usd = secs * mb / 1024 * ARM64_USD_PER_GB_SECOND
        kind = "measured" if abs(vcpus - round(vcpus)) < 0.01 and round(vcpus) in (1, 2) else (
            "modelled" if vcpus > 1 else "share")
        print(f"  {mb:>9}  {vcpus:>5.2f}  {r:>10,.0f}  {secs:>13.2f}  {usd:>15.6f}  {kind:8}")
        # Up to one vCPU the price per row is flat (CPU grows with memory): of sizes
        # within 1 % of the cheapest, the largest is as cheap and the fastest.
        if mb >= need and (best is None or usd <= best[1] * 1.01):
            best = (mb, min(usd, best[1]) if best else usd)
    if best:
        print(f"  recommended: {best[0]} MB, the fastest of the cheapest per row with twice the "
              f"peak RSS ({need:.0f} MiB) free; more memory buys time per delivery at a "
              "higher price per row")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin-dir", required=True, type=Path)
    ap.add_argument("--file", required=True, type=Path)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--venv-bin", type=Path, default=Path(sys.executable).parent)
    args = ap.parse_args()
    rows = sum(1 for _ in open(args.file, "rb")) - 1
    moto, endpoint = start_moto(args.venv_bin)
    try:
        base = {"AWS_ENDPOINT_URL": endpoint, "AWS_REGION": REGION,
                "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
        figures = {"receive": [], "process 1 thread": [], "process 2 threads": []}
        for run in range(args.runs):
            for threads in (1, 2):
                s3, sqs, env = provision(endpoint, f"bench{run}t{threads}")
                env.update(base)
                s3.upload_file(str(args.file), env["NAERDATA_LANDING_BUCKET"], KEY)
                notification = {"Records": [{"eventName": "ObjectCreated:Put", "s3": {
                    "bucket": {"name": env["NAERDATA_LANDING_BUCKET"]},
                    "object": {"key": KEY, "size": args.file.stat().st_size}}}]}
                receipt = invoke_once(args.bin_dir / "receive", env,
                                      sqs_event(json.dumps(notification)))
                if threads == 1:
                    figures["receive"].append(receipt)
                msgs = sqs.receive_message(QueueUrl=env["NAERDATA_PROCESS_QUEUE_URL"])["Messages"]
                env["NAERDATA_THREADS"] = str(threads)
                name = "process 1 thread" if threads == 1 else "process 2 threads"
                figures[name].append(
                    invoke_once(args.bin_dir / "process", env, sqs_event(msgs[0]["Body"])))
        print(f"Lambda functions as built binaries ({args.runs} cold starts each; "
              f"S3 is a local moto server; {rows:,} rows, {args.file.stat().st_size / 2**20:.0f} MiB)")
        rate = {}
        for name, runs in figures.items():
            init = statistics.median(r[0] for r in runs)
            invoke = statistics.median(r[1] for r in runs)
            peak = max(r[2] for r in runs)
            extra = ""
            if name.startswith("process"):
                rate[name] = (rows / invoke, peak)
                extra = f"  {rows / invoke:>10,.0f} rows/s"
            print(f"  {name:<17} init {init * 1000:7.0f} ms  invoke {invoke:7.2f} s{extra}"
                  f"  peak RSS {peak:6.0f} MiB")
        model(rate["process 1 thread"], rate["process 2 threads"])
    finally:
        moto.kill()
        moto.wait()


if __name__ == "__main__":
    main()
