#!/usr/bin/env python3
"""Athena's paging in front of moto, for the publish function's tests.

moto answers GetQueryResults with every injected row at once; Athena gives at most
MaxResults (<= 1,000) rows a page and a NextToken for the rest. This proxy forwards
every request to moto unchanged, except that it cuts GetQueryResults answers into
pages as Athena does, so the client's paging is exercised. It counts the pages it
served (GET /pages).

moto runs no SQL. For a rebuild's UNLOAD (a statement opening with
`-- naerdata rebuild current table <table>`), the proxy writes what Athena would: the
objects a test staged under `_athena_stage/<table>/` of the same bucket are copied
into the statement's TO location, named as Athena names its files (no extension).

Usage: athena_pages.py MOTO_ENDPOINT; prints its own port on the first line of stdout.
"""
import json
import re
import sys
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3

MOTO = sys.argv[1].rstrip("/")
PAGES = {"served": 0}


class Proxy(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def reply(self, status, headers, body):
        self.send_response(status)
        for k, v in headers:
            if k.lower() not in ("content-length", "transfer-encoding", "connection", "server", "date"):
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def forward(self, body):
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
        req = urllib.request.Request(MOTO + self.path, data=body if self.command != "GET" else None,
                                     headers=headers, method=self.command)
        try:
            with urllib.request.urlopen(req) as r:
                return r.status, r.getheaders(), r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.headers.items(), e.read()

    def do_GET(self):
        if self.path == "/pages":
            self.reply(200, [("Content-Type", "application/json")], json.dumps(PAGES).encode())
            return
        self.reply(*self.forward(None))

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.headers.get("X-Amz-Target") == "AmazonAthena.StartQueryExecution":
            ctas(json.loads(body).get("QueryString", ""))
        if self.headers.get("X-Amz-Target") != "AmazonAthena.GetQueryResults":
            self.reply(*self.forward(body))
            return
        request = json.loads(body or b"{}")
        size = int(request.pop("MaxResults", 1000))
        start = int(request.pop("NextToken", "0") or "0")
        if not 1 <= size <= 1000:
            error = {"__type": "InvalidRequestException", "Message": f"MaxResults {size} is not in 1..1000"}
            self.reply(400, [("Content-Type", "application/x-amz-json-1.1")], json.dumps(error).encode())
            return
        status, headers, answer = self.forward(json.dumps(request).encode())
        if status != 200:
            self.reply(status, headers, answer)
            return
        answer = json.loads(answer)
        rows = answer.get("ResultSet", {}).get("Rows", [])
        answer.setdefault("ResultSet", {})["Rows"] = rows[start:start + size]
        if start + size < len(rows):
            answer["NextToken"] = str(start + size)
        PAGES["served"] += 1
        self.reply(200, [("Content-Type", "application/x-amz-json-1.1")], json.dumps(answer).encode())


def ctas(sql):
    """Stands in for Athena's writing of a rebuild's files."""
    table = re.match(r"-- naerdata rebuild current table (\w+)\n", sql)
    location = re.search(r"\nTO 's3://([^/]+)/([^']*)'\n", sql)
    if not table or not location:
        return
    bucket, prefix = location.groups()
    s3 = boto3.client("s3", endpoint_url=MOTO, region_name="eu-north-1",
                      aws_access_key_id="testing", aws_secret_access_key="testing")
    staged = s3.list_objects_v2(Bucket=bucket, Prefix=f"_athena_stage/{table.group(1)}/").get("Contents", [])
    for n, o in enumerate(staged):
        s3.copy_object(Bucket=bucket, Key=f"{prefix}20261207_120000_{n:05d}_athena_0",
                       CopySource={"Bucket": bucket, "Key": o["Key"]})


def main():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Proxy)
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
