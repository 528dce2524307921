"""`tacepredict report`: one self-contained HTML page and its PDF, opened in a real headless Chromium.

The browser is driven over the Chrome DevTools protocol through ``--remote-debugging-pipe`` (the protocol's
JSON messages on file descriptors 3 and 4: no port, no proxy, no client package). Where Chromium is missing the
test runs scripts/ensure_chromium.sh once and skips, naming the reason, when that cannot install it.
"""

import fcntl
import json
import os
import select
import subprocess
import tempfile
import time
import unicodedata

import numpy as np
import pandas as pd
import pytest

from TACEPredictLib import InputError, cli, models
from TACEPredictLib.stats import metrics as M
from TACEPredictLib.models.clinical_scores import SCORES
from TACEPredictLib.data.cohort import CohortData
from TACEPredictLib.stats.model_report import (TRIPOD_AI_ITEMS, chromium_flags, find_chromium,
                                                survival_net_benefit, write_report)

from conftest import REPO, write_survival_cohort


def _chromium():
    path = find_chromium()
    if path is None:
        subprocess.run(["bash", os.path.join(REPO, "scripts", "ensure_chromium.sh")], check=False)
        path = find_chromium()
    return path


class DevTools:
    """A headless Chromium and its DevTools protocol over a pipe (requests, responses and events)."""

    def __init__(self, chromium):
        self.profile = tempfile.TemporaryDirectory(prefix="tacepredict_cdp_")
        to_browser_r, to_browser_w = os.pipe()
        from_browser_r, from_browser_w = os.pipe()

        def child():  # the protocol's ends must be fds 3 (browser reads) and 4 (browser writes)
            a = fcntl.fcntl(to_browser_r, fcntl.F_DUPFD, 100)
            b = fcntl.fcntl(from_browser_w, fcntl.F_DUPFD, 100)
            os.dup2(a, 3)
            os.dup2(b, 4)
            os.set_inheritable(3, True)
            os.set_inheritable(4, True)

        self.proc = subprocess.Popen([chromium, *chromium_flags(self.profile.name), "--remote-debugging-pipe",
                                      "about:blank"], preexec_fn=child, close_fds=False,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_browser_r)
        os.close(from_browser_w)
        self.write_fd, self.read_fd = to_browser_w, from_browser_r
        self.buffer = b""
        self.next_id = 0
        self.events = []

    def _read_message(self, deadline):
        while b"\0" not in self.buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no answer from Chromium's DevTools pipe")
            ready, _, _ = select.select([self.read_fd], [], [], remaining)
            if ready:
                chunk = os.read(self.read_fd, 1 << 16)
                if not chunk:
                    raise RuntimeError("Chromium closed its DevTools pipe")
                self.buffer += chunk
        message, self.buffer = self.buffer.split(b"\0", 1)
        return json.loads(message)

    def send(self, method, params=None, session=None, timeout=60):
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self.write_fd, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method, timeout=60):
        deadline = time.monotonic() + timeout
        while True:
            for event in self.events:
                if event.get("method") == method:
                    return event
            self.events.append(self._read_message(deadline))

    def close(self):
        try:
            self.send("Browser.close", timeout=10)
        except (RuntimeError, TimeoutError, OSError):
            pass
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self.write_fd)
        os.close(self.read_fd)
        self.profile.cleanup()


def open_in_chromium(chromium, html_path):
    """Load the page; return (console / exception / network problems, image states, page sections)."""
    tools = DevTools(chromium)
    try:
        target = tools.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = tools.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Runtime", "Log", "Network", "Page"):
            tools.send(f"{domain}.enable", session=session)
        tools.send("Page.navigate", {"url": "file://" + os.path.abspath(html_path)}, session=session)
        tools.wait_for("Page.loadEventFired")
        state = tools.send("Runtime.evaluate", {"expression": """JSON.stringify({
            images: Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.naturalHeight, i.alt]),
            sections: document.querySelectorAll('section.page').length,
            titles: Array.from(document.querySelectorAll('section.page h2')).map(h => h.textContent.trim())})""",
                                                "returnByValue": True}, session=session)["result"]["value"]
        problems = []
        for event in tools.events:
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.exceptionThrown":
                problems.append(("exception", params["exceptionDetails"].get("text")))
            elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert", "warning"):
                problems.append(("console", params.get("type"), [a.get("value") for a in params.get("args", [])]))
            elif method == "Log.entryAdded" and params["entry"]["level"] in ("error", "warning"):
                problems.append(("log", params["entry"]["text"]))
            elif method == "Network.requestWillBeSent" and \
                    not params["request"]["url"].startswith(("file:", "data:", "about:")):
                problems.append(("network", params["request"]["url"]))
            elif method == "Network.loadingFailed":
                problems.append(("failed load", params.get("errorText")))
        return problems, json.loads(state)
    finally:
        tools.close()


def _cohort(folder):
    """120 clinical cases (no images) with ALBI / HAP inputs; marked as the synthetic demo cohort."""
    manifest, _ = write_survival_cohort(folder, cases=120, seed=5, families=(("radiomics", 4),))
    table = pd.read_csv(manifest)
    rng = np.random.default_rng(1)
    table["albumin_g_l"] = np.round(rng.normal(38, 5, len(table)), 1)
    table["bilirubin_umol_l"] = np.round(np.exp(rng.normal(np.log(15), 0.5, len(table))), 1)
    table.loc[:5, "albumin_g_l"] = np.nan  # six cases the liver scores cannot grade
    table.to_csv(manifest, index=False)
    with open(os.path.join(folder, "cohort.json"), "w") as handle:  # what `tacepredict phantom` leaves
        json.dump({"synthetic": True}, handle)
    return manifest


def test_survival_decision_curve_equals_dcurves():
    dcurves = pytest.importorskip("dcurves")
    data = pd.read_csv(os.path.join(os.path.dirname(dcurves.__file__), "data", "df_surv.csv"))
    thresholds = np.round(np.arange(0.01, 0.50, 0.01), 2)
    theirs = dcurves.dca(data=data, outcome="cancer", modelnames=["cancerpredmarker"], thresholds=thresholds,
                         time=1, time_to_outcome_col="ttcancer")
    ours = survival_net_benefit(data["ttcancer"], data["cancer"].astype(int), data["cancerpredmarker"], 1, thresholds)
    for column, model in (("model", "cancerpredmarker"), ("treat_all", "all")):
        expected = theirs[theirs["model"] == model].sort_values("threshold")["net_benefit"].to_numpy()
        np.testing.assert_allclose(ours[column], expected, atol=1e-12)


def test_report_renders_in_chromium_with_every_figure_and_page(tmp_path, capsys):
    chromium = _chromium()
    if chromium is None:
        pytest.skip("no Chromium on PATH and scripts/ensure_chromium.sh could not install Debian's chromium "
                    "(needs root and apt-get)")
    manifest = _cohort(str(tmp_path / "cohort"))
    bundle = str(tmp_path / "cox")
    model, _ = models.train_bundle("survival", "clinical-cox", CohortData(manifest), bundle)
    out = str(tmp_path / "report")
    assert cli.main(["report", "--model", bundle, "--compare", "albi", "--manifest", manifest, "--out", out,
                     "--bootstrap", "40"]) == 0
    assert "PDF written" in capsys.readouterr().out
    summary = json.load(open(os.path.join(out, "report.json")))
    pages = summary["pages"]
    assert pages[:7] == ["Summary", "Cohort (Table 1)", "Model specification", "Performance",
                         "Calibration and decision curve", "Kaplan-Meier", "Built-in published scores"]
    assert pages[-1].startswith("TRIPOD+AI checklist")

    # the numbers are the library's: the C-index of the bundle's risk on these cases
    table = CohortData(manifest).table
    risk = models.load(bundle)[0].risk_score(CohortData(manifest))
    expected = M.concordance_index(table["os_days"], risk, table["os_event"])
    assert summary["metrics"][0]["metric"] == "Harrell's C-index"
    assert summary["metrics"][0]["value"] == f"{expected:.3f}"
    scores = {s["kind"]: s for s in summary["scores"]}
    assert scores["hap"]["shown"] and scores["hap"]["graded"] == 114  # six cases lack albumin: HAP undecided
    assert not scores["albi"]["shown"]  # given with --compare: listed there instead
    albi = summary["comparators"][0]
    assert albi["label"] == "ALBI grade" and albi["cases"] == 114
    graded = SCORES["albi"]().evaluate(table)["risk_score"].notna().to_numpy()
    paired = M.compare_concordance(table["os_days"][graded], SCORES["albi"]().risk_score(table)[graded].to_numpy(),
                                   risk[graded], table["os_event"][graded], n_bootstrap=40)
    assert albi["difference"] == f"{paired['difference']:+.3f}"  # the comparator's C minus the model's
    assert not scores["bclc-b-substage"]["shown"] and "missing bclc" in scores["bclc-b-substage"]["reasons"]
    assert [r["item"] for r in summary["tripod"]] == [i[0] for i in TRIPOD_AI_ITEMS]
    assert len(summary["tripod"]) == 52 and summary["tripod"][-1]["item"] == "27c"
    assert {r["status"] for r in summary["tripod"]} == {"covered", "partly", "authors"}
    assert summary["caveats"][0].startswith("The model is evaluated on the cohort it was trained on")

    html = open(os.path.join(out, "report.html"), encoding="utf-8").read()
    assert "http://" not in html and "https://" not in html  # nothing to fetch when it is opened
    assert html.count('src="data:image/png;base64,') == html.count("<img ")

    problems, state = open_in_chromium(chromium, os.path.join(out, "report.html"))
    assert problems == []
    assert [alt for *_, alt in state["images"]] == [
        "calibration of clinical-cox at 3 years", "decision curve at 3 years",
        "Kaplan-Meier by clinical-cox risk group", "Kaplan-Meier by HAP score grade"]
    assert all(complete and width > 0 and height > 0 for complete, width, height, _ in state["images"])
    assert state["sections"] == len(pages) and state["titles"] == pages

    from pypdf import PdfReader
    pdf = PdfReader(os.path.join(out, "report.pdf"))
    assert len(pdf.pages) == len(pages)  # each section fills one A4 page: none overflows, none is blank
    for number, (page, title) in enumerate(zip(pdf.pages, pages), start=1):
        text = " ".join(unicodedata.normalize("NFKC", page.extract_text()).split())  # the ligature "ﬁ" -> "fi"
        assert "RESEARCH USE ONLY" in text and "SYNTHETIC DEMO COHORT" in text, number
        assert title in text and f"page {number} of {len(pages)}" in text


def test_binary_report_of_the_built_in_model_cs(tmp_path):
    rng = np.random.default_rng(7)
    n = 90
    table = pd.DataFrame({"case_id": [f"a{i}" for i in range(n)], "tumor_size_mm": rng.uniform(20, 120, n).round(),
                          "cirrhosis": rng.integers(0, 2, n), "fusion_lesion": rng.integers(0, 2, n),
                          "capsule": rng.choice(["absent", "non-intact", "intact"], n),
                          "nodule_in_nodule": rng.integers(0, 2, n)})
    from TACEPredictLib.models.aggressive_progression import ClinicalSemanticScore
    p = 1 / (1 + np.exp(-ClinicalSemanticScore().score(table)))
    table["aggressive_pd"] = (rng.random(n) < p).astype(int)
    table["aggressive_pd_days"] = np.where(table["aggressive_pd"] == 1, rng.uniform(60, 500, n),
                                           rng.uniform(300, 900, n)).round()
    manifest = str(tmp_path / "m.csv")
    table.to_csv(manifest, index=False)
    result = write_report("clinical-semantic", manifest, str(tmp_path / "r"), task="aggressive-pd", n_bootstrap=40,
                          pdf=False)
    assert result["pdf"] is None and result["pdf_status"] == "skipped"
    summary = json.load(open(tmp_path / "r" / "report.json"))
    assert summary["metrics"][0]["metric"] == "AUC"
    assert summary["metrics"][0]["value"] == f"{M.roc_auc(table['aggressive_pd'], p):.3f}"
    # paper 004 gives Model_CS no cut-off: no threshold statistics, no risk groups, no Kaplan-Meier page
    assert "Kaplan-Meier" not in result["pages"]
    rows = {m["metric"]: m for m in summary["metrics"]}
    assert "cut-off" in rows and "no cut-off" in rows["cut-off"]["note"]
    assert not any(name.startswith("sensitivity at") for name in rows)
    with pytest.raises(InputError, match="column '--compare'"):
        write_report("clinical-semantic", manifest, str(tmp_path / "r2"), compare=["hap"], task="aggressive-pd",
                     pdf=False)
