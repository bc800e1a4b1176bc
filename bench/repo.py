#!/usr/bin/env python3
"""Face repo speed: identify search over 1k / 100k / 1M faces, enrolment
throughput, and REST identify latency under 16 concurrent clients.

Search: the real enrolled people of ../shared/data/faces/enroll plus synthetic
L2-normalised vectors, one real probe face, search only (no detection), with
the configured search options (config.yaml repo.search); galleries above
exact_max_faces are timed with an exact scan too, in the same run. Then the
recall of the sign-code prescan on real faces (LFW View 1), by candidate share.
Enrolment and REST: a real `facewatch serve` (SQLite, embedded broker) in a
temporary data directory, images from pairs/lfw-view1/images; then the same
server restarted under another embedding model id, timing the re-embedding of
every enrolled face from its original.

Last line: ``repo identify_1m_p95_ms=<..> enroll_per_s=<..>`` (enrol_per_s from a
bulk job; one-by-one REST uploads are printed too).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import aiohttp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: bench.common, the packages

from bench.common import DATA, ROOT, Server, embed_lfw, make_analyzer, make_config, pct

from repo.index import GalleryIndex
from vision.images import decode_image


def search_latency(sizes: list[int], repeats: int) -> dict[int, tuple[float, float, bool]]:
    """p50/p95 ms and whether the top match is right, with the configured search options.

    Galleries larger than ``exact_max_faces`` are also timed with an exact scan
    of the same matrix in the same run, the baseline for the sign-code prescan.
    """
    analyzer = make_analyzer(make_config(None, quality__yaw_source="landmarks"))
    search = make_config(None).repo.search.options()
    enrolled: list[np.ndarray] = []
    names: list[str] = []
    for person in sorted((DATA / "faces" / "enroll").iterdir()):
        for image in sorted(person.iterdir()):
            face = analyzer.analyze(decode_image(image.read_bytes()), max_faces=1)[0]
            assert face.embedding is not None
            enrolled.append(face.embedding)
            names.append(person.name)
    probe = analyzer.analyze(decode_image((DATA / "faces" / "probe" / "obama1.jpg").read_bytes()),
                             max_faces=1)[0].embedding
    assert probe is not None
    rng = np.random.default_rng(0)
    out = {}
    for size in sizes:
        index = GalleryIndex(len(probe), capacity=size + len(enrolled), options=search)
        index.add([f"real{i}" for i in range(len(enrolled))], names, np.stack(enrolled))
        done = len(enrolled)
        while done < size:  # in chunks: 1M x 512 floats is 2 GB
            n = min(100_000, size - done)
            chunk = rng.standard_normal((n, len(probe))).astype(np.float32)
            chunk /= np.linalg.norm(chunk, axis=1, keepdims=True)
            index.add([f"s{done + i}" for i in range(n)], [f"subject{(done + i) // 4}" for i in range(n)], chunk)
            done += n
        how = "exact" if size <= search.exact_max_faces else "sign-code prescan"
        out[size] = time_search(index, probe, repeats, f"{size:>8} faces, {how}")
        if size > search.exact_max_faces:
            default_ms = out[size][0]
            index.options = replace(search, exact_max_faces=size)
            exact_ms = time_search(index, probe, repeats, f"{size:>8} faces, exact (baseline)")[0]
            print(f"  prescan vs exact scan, median: {default_ms / exact_ms:.2f}x the time "
                  f"({exact_ms / default_ms:.1f}x faster)")
        del index
    return out


def time_search(index: GalleryIndex, probe: np.ndarray, repeats: int, label: str) -> tuple[float, float, bool]:
    for _ in range(3):
        index.search(probe, 5)
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        matches = index.search(probe, 5)
        samples.append((time.perf_counter() - start) * 1000)
    right = matches[0].subject_pk == "obama"
    p50, p95 = pct(samples, 50), pct(samples, 95)
    print(f"  identify search, {label:<36} p50 {p50:7.2f} ms  p95 {p95:7.2f} ms  "
          f"top match {'obama (right)' if right else matches[0].subject_pk + ' (WRONG)'}", flush=True)
    return p50, p95, right


def prescan_recall(fractions: list[float]) -> None:
    """Recall of the sign-code cut on real faces: LFW View 1, every face against all the others.

    For each query the exact best match is found by a full scan; the cut keeps
    it when it is among the ``fraction`` of faces nearest by Hamming distance
    (at a million faces the configured 1 % is 10,000 candidates; here the same
    share of 4,991). "Genuine" queries are those whose exact best match is the
    same person: the matches identify exists for.
    """
    import faiss

    from repo.index import sign_codes

    vectors, labels = embed_lfw(make_analyzer(make_config(None, quality__yaw_source="landmarks")))
    n = len(vectors)
    similarity = vectors @ vectors.T
    np.fill_diagonal(similarity, -2.0)
    best = similarity.argmax(axis=1)
    genuine = labels[best] == labels
    codes = sign_codes(vectors)
    print(f"  prescan recall on LFW View 1: {n} faces, "
          f"{int(genuine.sum())} queries whose best match is the same person")
    for fraction in fractions:
        take = max(1, int(np.ceil(fraction * n)))
        _, found = faiss.knn_hamming(codes, codes, take + 1)  # +1: the query itself comes back
        kept = np.array([best[i] in found[i] for i in range(n)])
        print(f"    candidates {fraction:6.1%} ({take:3d} faces): genuine best match kept {kept[genuine].mean():.4f} "
              f"(lost {int((~kept[genuine]).sum())}), any best match kept {kept.mean():.4f}")


def reembed_rate(server: Server) -> float:
    """Faces re-embedded per second (from their originals) after a restart under another embedding model id."""
    server.stop()
    # No calibration ships for a model of our own: it needs a fixed cosine to start.
    server.start(FACEWATCH_MODELS__EMBEDDER__MODEL_ID="bench-another-model", FACEWATCH_RECOGNITION__THRESHOLD="0.278")
    started = time.perf_counter()
    deadline = started + 600
    while time.perf_counter() < deadline:
        status = server.health()["reembedding"]
        if status["pending"] and not status["running"]:
            break
        time.sleep(0.1)
    else:
        raise RuntimeError(f"re-embedding did not finish: {status}")
    elapsed = time.perf_counter() - started
    print(f"  re-embedding after a model change: {status['done']} of {status['pending']} faces in {elapsed:.1f} s "
          f"= {status['done'] / elapsed:.1f} faces/s (from the restart; {status['failed']} failed)", flush=True)
    return float(status["done"] / elapsed)


async def rest_bench(server: Server, images: list[Path], concurrency_enrol: int, clients: int,
                     requests: int) -> dict[str, float]:
    base, headers = f"http://127.0.0.1:{server.port}", {"x-api-key": server.key}
    async with aiohttp.ClientSession(headers=headers) as http:
        await http.post(f"{base}/api/v1/galleries", json={"name": "lfw"})
        people = sorted({p.parent.name for p in images})
        for person in people:
            await http.post(f"{base}/api/v1/galleries/lfw/subjects", json={"id": person, "name": person})
        queue = list(images)
        failures = 0

        async def enrol_worker() -> None:
            nonlocal failures
            while queue:
                image = queue.pop()
                form = aiohttp.FormData()
                form.add_field("file", image.read_bytes(), filename=image.name)
                form.add_field("force", "true")
                async with http.post(f"{base}/api/v1/galleries/lfw/subjects/{image.parent.name}/faces", data=form) as r:
                    await r.read()
                    failures += r.status != 201

        start = time.perf_counter()
        await asyncio.gather(*(enrol_worker() for _ in range(concurrency_enrol)))
        enrol_s = time.perf_counter() - start
        per_s = len(images) / enrol_s
        print(f"  enrolment over REST ({concurrency_enrol} concurrent uploads): {len(images)} images in "
              f"{enrol_s:.1f} s = {per_s:.1f} images/s ({failures} refused)", flush=True)
        import io
        import zipfile

        await http.post(f"{base}/api/v1/galleries", json={"name": "lfwbulk"})
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as archive:
            for image in images:
                archive.writestr(f"{image.parent.name}/{image.name}", image.read_bytes())
        form = aiohttp.FormData()
        form.add_field("file", buf.getvalue(), filename="lfw.zip")
        start = time.perf_counter()
        async with http.post(f"{base}/api/v1/galleries/lfwbulk/enrol", data=form) as r:
            job = await r.json()
        while job.get("status") not in ("done", "failed"):
            await asyncio.sleep(0.1)
            async with http.get(f"{base}/api/v1/jobs/{job['id']}") as r:
                job = await r.json()
        bulk_s = time.perf_counter() - start
        bulk_per_s = len(images) / bulk_s
        print(f"  bulk enrolment job (zip upload to done): {len(images)} images in {bulk_s:.1f} s = {bulk_per_s:.1f} "
              f"images/s ({job['result']['added']} faces added, {len(job['result']['failed'])} refused)", flush=True)
        probe = (DATA / "faces" / "probe" / "obama1.jpg").read_bytes()
        latencies: list[float] = []
        remaining = requests

        async def identify_client() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                form = aiohttp.FormData()
                form.add_field("file", probe, filename="probe.jpg")
                form.add_field("galleries", "lfw")
                t0 = time.perf_counter()
                async with http.post(f"{base}/api/v1/identify", data=form) as r:
                    await r.read()
                    if r.status != 200:
                        raise RuntimeError(f"identify failed: {r.status}")
                latencies.append((time.perf_counter() - t0) * 1000)

        start = time.perf_counter()
        await asyncio.gather(*(identify_client() for _ in range(clients)))
        wall = time.perf_counter() - start
        print(f"  REST identify, {clients} concurrent clients, {requests} requests: p50 {pct(latencies, 50):.0f} ms  "
              f"p95 {pct(latencies, 95):.0f} ms  ({requests / wall:.1f} requests/s)", flush=True)
        return {"enroll_per_s": per_s, "bulk_per_s": bulk_per_s, "rest_p95_ms": pct(latencies, 95)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,100000,1000000")
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--enrol-images", type=int, default=400)
    parser.add_argument("--enrol-concurrency", type=int, default=2)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--recall", default="0.002,0.005,0.01,0.02",
                        help="candidate shares for the prescan recall study on LFW ('' to skip)")
    parser.add_argument("--no-rest", action="store_true", help="search and recall only")
    parser.add_argument("--server-env", action="append", default=[], metavar="KEY=VALUE",
                        help="config for the server, e.g. FACEWATCH_QUALITY__OCCLUSION_CHECK=false")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    search = search_latency(sizes, args.repeats)
    if args.recall:
        prescan_recall([float(f) for f in args.recall.split(",")])
    if args.no_rest:
        return 0
    images = sorted((DATA / "pairs" / "lfw-view1" / "images").glob("*/*.jpg"))[: args.enrol_images]
    models = ROOT / "data" / "models" / "faceplugin-face-recognition-js-0.0.1"
    with tempfile.TemporaryDirectory() as tmp:
        server = Server(Path(tmp), models, **dict(kv.split("=", 1) for kv in args.server_env))
        try:
            rest = asyncio.run(rest_bench(server, images, args.enrol_concurrency, args.clients, args.requests))
            reembed_per_s = reembed_rate(server)
        finally:
            server.stop()
    largest = max(sizes)
    # enroll_per_s: the bulk path (a zip as one job), the way to enrol many images.
    key = f"identify_{largest // 1_000_000}m_p95_ms" if largest >= 1_000_000 else "identify_p95_ms"
    print(f"repo {key}={search[largest][1]:.1f} enroll_per_s={rest['bulk_per_s']:.1f} "
          f"rest_enroll_per_s={rest['enroll_per_s']:.1f} rest_identify_p95_ms={rest['rest_p95_ms']:.0f} "
          f"reembed_per_s={reembed_per_s:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
