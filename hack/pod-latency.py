#!/usr/bin/env python3
"""Pod creation -> Running latency, measured at the API (hack/bench-kubelet.sh).

One process holds one TLS connection to the API server for the creates and
one watch on the namespace's pods, so neither a client's start-up (kubectl is
a Go binary: ~0.2 s per call on 2 cores) nor a poll interval is in the
figure: the clock starts just before the POST of a pod and stops when the
watch delivers the status update with phase Running.

    pod-latency.py --kubeconfig F --namespace NS --node NODE --image IMG \
        --prefix P --label SET (--sequential N | --batch N)

--sequential N: N pods one after another (each created once the one before
runs); prints one line per pod: the latency in ms, and the ms from the start
of its POST until the watch delivered the new pod (one API write seen
through a watch: the hop a kubelet's pod watch and its status update each
pay).
--batch N: N pods created at once (back to back on the one connection);
prints the ms from the first create until the last one runs.

The kubeconfig must carry its credentials inline (client certificate and
key data, or a token) as the test bed's do. Standard library only.
"""
import argparse
import base64
import http.client
import json
import os
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse


def load_kubeconfig(path):
    # Kubeconfigs are YAML (no YAML parser in the standard library): read
    # kubectl's JSON rendering of the file instead.
    kubectl = os.environ.get("KUBECTL", "kubectl")
    out = subprocess.run(
        [kubectl, "--kubeconfig", path, "config", "view", "--raw", "--minify", "-o", "json"],
        check=True,
        capture_output=True,
    ).stdout
    cfg = json.loads(out)
    cluster = cfg["clusters"][0]["cluster"]
    user = cfg["users"][0]["user"]
    return cluster, user


class Api:
    def __init__(self, cluster, user, tmp):
        url = urllib.parse.urlparse(cluster["server"])
        self.host, self.port = url.hostname, url.port or 443
        ctx = ssl.create_default_context()
        if "certificate-authority-data" in cluster:
            ctx.load_verify_locations(
                cadata=base64.b64decode(cluster["certificate-authority-data"]).decode()
            )
        elif "certificate-authority" in cluster:
            ctx.load_verify_locations(cafile=cluster["certificate-authority"])
        self.headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if "client-certificate-data" in user:
            crt, key = os.path.join(tmp, "c.crt"), os.path.join(tmp, "c.key")
            with open(crt, "wb") as f:
                f.write(base64.b64decode(user["client-certificate-data"]))
            with open(key, "wb") as f:
                f.write(base64.b64decode(user["client-key-data"]))
            ctx.load_cert_chain(crt, key)
        elif "client-certificate" in user:
            ctx.load_cert_chain(user["client-certificate"], user["client-key"])
        elif "token" in user:
            self.headers["Authorization"] = "Bearer " + user["token"]
        else:
            sys.exit("pod-latency: the kubeconfig has no inline credentials")
        self.ctx = ctx

    def conn(self, timeout=None):
        return http.client.HTTPSConnection(self.host, self.port, context=self.ctx, timeout=timeout)

    def request(self, conn, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        conn.request(method, path, body=data, headers=self.headers)
        resp = conn.getresponse()
        payload = resp.read()
        if resp.status >= 300:
            sys.exit(f"pod-latency: {method} {path}: {resp.status} {payload[:300]!r}")
        return json.loads(payload)


class Watch(threading.Thread):
    """Records when each pod of the namespace is first seen, and first seen Running."""

    def __init__(self, api, ns, label):
        super().__init__(daemon=True)
        self.api, self.ns, self.label = api, ns, label
        self.running = {}
        self.seen = {}
        self.cond = threading.Condition()
        self.error = None
        conn = api.conn()
        sel = urllib.parse.quote(label)
        listed = api.request(conn, "GET", f"/api/v1/namespaces/{ns}/pods?labelSelector={sel}")
        conn.close()
        self.path = (
            f"/api/v1/namespaces/{ns}/pods?watch=1&labelSelector={sel}"
            f"&resourceVersion={listed['metadata']['resourceVersion']}"
        )

    def run(self):
        try:
            conn = self.api.conn()
            conn.request("GET", self.path, headers=self.api.headers)
            resp = conn.getresponse()
            if resp.status != 200:
                raise RuntimeError(f"watch: {resp.status} {resp.read()[:300]!r}")
            while True:
                line = resp.readline()
                if not line:
                    raise RuntimeError("watch: the API server closed the stream")
                ev = json.loads(line)
                obj = ev.get("object", {})
                if ev.get("type") == "ERROR":
                    raise RuntimeError(f"watch: {obj.get('message')}")
                name = obj.get("metadata", {}).get("name")
                now = time.monotonic()
                with self.cond:
                    self.seen.setdefault(name, now)
                if obj.get("status", {}).get("phase") == "Running":
                    with self.cond:
                        if name not in self.running:
                            self.running[name] = now
                            self.cond.notify_all()
        except Exception as e:  # reported by wait()
            with self.cond:
                self.error = e
                self.cond.notify_all()

    def wait(self, names, timeout):
        deadline = time.monotonic() + timeout
        with self.cond:
            while not all(n in self.running for n in names):
                if self.error:
                    sys.exit(f"pod-latency: {self.error}")
                left = deadline - time.monotonic()
                if left <= 0:
                    missing = [n for n in names if n not in self.running]
                    sys.exit(f"pod-latency: not Running after {timeout} s: {' '.join(missing[:10])}")
                self.cond.wait(left)
            return max(self.running[n] for n in names)


def pod(name, ns, node, image, label):
    key, _, value = label.partition("=")
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": {key: value}},
        "spec": {
            "nodeName": node,
            "automountServiceAccountToken": False,
            "terminationGracePeriodSeconds": 1,
            "containers": [
                {
                    "name": "c",
                    "image": image,
                    "imagePullPolicy": "IfNotPresent",
                    "command": ["sleep", "36000"],
                }
            ],
        },
    }


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--kubeconfig", required=True)
    p.add_argument("--namespace", required=True)
    p.add_argument("--node", required=True)
    p.add_argument("--image", required=True)
    p.add_argument("--prefix", required=True)
    p.add_argument("--label", required=True, help="KEY=VALUE put on the pods and watched")
    p.add_argument("--timeout", type=float, default=180)
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--sequential", type=int)
    g.add_argument("--batch", type=int)
    a = p.parse_args()

    cluster, user = load_kubeconfig(a.kubeconfig)
    with tempfile.TemporaryDirectory() as tmp:
        api = Api(cluster, user, tmp)
        watch = Watch(api, a.namespace, a.label)
    watch.start()
    conn = api.conn(timeout=60)
    path = f"/api/v1/namespaces/{a.namespace}/pods"

    def create(name):
        api.request(conn, "POST", path, pod(name, a.namespace, a.node, a.image, a.label))

    if a.sequential:
        for i in range(1, a.sequential + 1):
            name = f"{a.prefix}{i}"
            t0 = time.monotonic()
            create(name)
            t1 = watch.wait([name], a.timeout)
            with watch.cond:
                hop = watch.seen[name] - t0
            print(round((t1 - t0) * 1000), round(hop * 1000, 1), flush=True)
    else:
        names = [f"{a.prefix}{i}" for i in range(1, a.batch + 1)]
        t0 = time.monotonic()
        for n in names:
            create(n)
        t1 = watch.wait(names, a.timeout * 5)
        print(round((t1 - t0) * 1000), flush=True)


if __name__ == "__main__":
    main()
