"""The annotation workbench in headless Chromium against a real `winnow run` (gunicorn +
worker) on the test database: an annotator signs in and judges pairwise, ranking and rating
items with the keyboard only; the Feedback rows must say exactly what was pressed."""

import sys
from pathlib import Path

import pytest
from selenium.common.exceptions import NoAlertPresentException
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from annotate.demo import make_demo
from annotate.models import AnnotationProject, Assignment, ProjectMember
from annotate.questions import normalise_questions
from annotate.setup import build_items, normalise_filter
from corpus.models import Feedback, Record
from tests.e2e.conftest import free_port, wait_for
from tests.e2e.test_user_journey import chromium_driver

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "var" / "screenshots"
PASSWORD = "a long demo password"


@pytest.fixture
def server(processes):
    """`winnow run` (gunicorn + worker) on the test database."""
    port = free_port()
    proc = processes.start(sys.executable, "-m", "winnow.cli", "run", "--port", str(port),
                           "--web-workers", "2", log="server")
    base = f"http://127.0.0.1:{port}"

    processes.wait_serving(proc, f"{base}/login/", log="server")
    yield base, proc


def press(browser, *keys):
    ActionChains(browser).send_keys(*keys).perform()


def item_on_screen(browser):
    return browser.execute_script(
        "return [...document.querySelectorAll('.response')].map(n => Number(n.dataset.response))")


def wait_item_changes(browser, before, what):
    return wait_for(lambda: (ids := item_on_screen(browser)) and ids != before and ids, timeout=20, what=what)


def submitted(project, user):
    return Assignment.objects.filter(project=project, annotator=user, status="submitted").count()


def test_annotator_judges_by_keyboard_only(server):
    base, _ = server
    demo = make_demo(PASSWORD)
    ann = demo["users"]["ann"]
    pairwise = demo["projects"]["Pairwise preferences"]
    rating = demo["projects"]["Rate responses"]
    ranking = demo["projects"]["Rank responses"]
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    browser = chromium_driver()
    try:
        browser.get(f"{base}/annotate/")
        wait_for(lambda: browser.find_elements(By.ID, "id_username"), what="the sign-in page")
        browser.find_element(By.ID, "id_username").send_keys("ann")
        browser.find_element(By.ID, "id_password").send_keys(PASSWORD + Keys.ENTER)
        wait_for(lambda: "Annotation projects" in browser.page_source, what="the project list")
        assert "Pairwise preferences" in browser.page_source
        browser.save_screenshot(str(SCREENSHOTS / "annotate-projects.png"))

        # -- pairwise: 1 = A much better, 4 = tie, 7 = B much better; Enter submits ----------
        browser.get(f"{base}/annotate/{pairwise.pk}/")
        shown = wait_for(lambda: item_on_screen(browser), what="the first pairwise item")
        browser.save_screenshot(str(SCREENSHOTS / "annotate-pairwise.png"))
        expected = []
        for key, choice, strength in (("1", "a", "much"), ("4", "tie", None), ("6", "b", "clear")):
            press(browser, key)
            press(browser, Keys.ENTER)
            expected.append((shown, choice, strength))
            shown = wait_item_changes(browser, shown, "the next pairwise item")
        wait_for(lambda: submitted(pairwise, ann) == 3, what="three pairwise submissions")
        # U undoes the last one, and the page shows it again with the answer pre-selected
        press(browser, "u")
        wait_for(lambda: submitted(pairwise, ann) == 2, what="the undo")
        wait_for(lambda: item_on_screen(browser) == expected[-1][0], what="the undone item back on screen")
        assert "on" in browser.find_elements(By.CSS_SELECTOR, ".question .choice")[5].get_attribute("class")
        press(browser, "3")
        press(browser, Keys.ENTER)
        expected[-1] = (expected[-1][0], "a", "slight")
        wait_for(lambda: submitted(pairwise, ann) == 3, what="the re-submission")
        rows = Feedback.objects.filter(kind="pairwise", author=ann).order_by("id")
        assert [(r.payload["choice"], r.payload["strength"]) for r in rows] == [(c, s) for _, c, s in expected]
        for row, (order, _, _) in zip(rows, expected):
            assert [row.payload["a"], row.payload["b"]] == order
            assert row.provenance["response_order"] == order
            assert row.provenance["annotation_project"] == pairwise.pk and row.provenance["role"] == "annotator"
        # S skips: the item is not submitted and never comes back
        before = item_on_screen(browser)
        press(browser, "s")
        wait_item_changes(browser, before, "the item after a skip")
        wait_for(lambda: Assignment.objects.filter(project=pairwise, annotator=ann, status="skipped").count() == 1,
                 what="the skip")
        press(browser, "?")
        wait_for(lambda: browser.find_element(By.ID, "keys").is_displayed(), what="the key help")
        browser.save_screenshot(str(SCREENSHOTS / "annotate-keys.png"))
        press(browser, Keys.ESCAPE)
        press(browser, "g")
        wait_for(lambda: browser.find_element(By.ID, "guidelines").is_displayed(), what="the guidelines")
        press(browser, "g")

        # -- rating: digits rate the focused cell and move on; arrows move --------------------
        browser.get(f"{base}/annotate/{rating.pk}/")
        shown = wait_for(lambda: item_on_screen(browser), what="the first rating item")
        cells = len(shown) * 2  # two aspects
        keys = [str(1 + n % 5) for n in range(cells)]
        press(browser, Keys.ARROW_RIGHT, Keys.ARROW_LEFT)  # arrows move (and back)
        for key in keys:
            press(browser, key)
        browser.save_screenshot(str(SCREENSHOTS / "annotate-rating.png"))
        press(browser, Keys.ENTER)
        wait_item_changes(browser, shown, "the next rating item")
        wait_for(lambda: submitted(rating, ann) == 1, what="the rating submission")
        rows = Feedback.objects.filter(kind="rating", author=ann).order_by("id")
        given = {(r.payload["response"], r.payload["aspect"]): r.payload["value"] for r in rows}
        want = {(rid, aspect): int(keys[i * 2 + j]) for i, rid in enumerate(shown)
                for j, aspect in enumerate(("helpfulness", "honesty"))}
        assert given == want and all(r.payload["scale_max"] == 5 for r in rows)

        # -- ranking: a digit is the focused response's rank; equal digits tie ---------------
        browser.get(f"{base}/annotate/{ranking.pk}/")
        shown = wait_for(lambda: item_on_screen(browser), what="the first ranking item")
        ranks = [2, 1, 2][: len(shown)]
        for rank in ranks:
            press(browser, str(rank))
        browser.save_screenshot(str(SCREENSHOTS / "annotate-ranking.png"))
        press(browser, Keys.ENTER)
        wait_item_changes(browser, shown, "the next ranking item")
        second = item_on_screen(browser)
        press(browser, "x", Keys.ENTER)  # all are bad
        wait_item_changes(browser, second, "the third ranking item")
        wait_for(lambda: submitted(ranking, ann) == 2, what="two ranking submissions")
        first_row, second_row = Feedback.objects.filter(kind="ranking", author=ann).order_by("id")
        want_groups = [sorted(r for r, k in zip(shown, ranks) if k == level) for level in sorted(set(ranks))]
        assert [sorted(g) for g in first_row.payload["ranking"]] == want_groups
        assert second_row.payload == {"ranking": [], "all_bad": True}

        errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
        assert not errors, errors
    finally:
        browser.quit()


def test_data_cannot_inject_html(server):
    base, _ = server
    demo = make_demo(PASSWORD)
    hostile = Record.objects.get(prompt__startswith="Summarise the plot of *Hamlet*", external_id="demo-0-6")
    hostile.prompt = "Evil <img src=x onerror=\"document.title='pwned'\"> **bold** <script>document.title='pwned'</script>"
    hostile.save()
    project = AnnotationProject.objects.create(
        name="hostile", dataset=demo["dataset"], questions=normalise_questions([{"kind": "pairwise"}]),
        record_filter=normalise_filter({"metadata": {"topic": "general"}}), created_by=demo["users"]["maria"])
    ProjectMember.objects.create(project=project, user=demo["users"]["ann"], role="annotator")
    build_items(project)
    project.items.exclude(record=hostile).delete()
    browser = chromium_driver()
    try:
        browser.get(f"{base}/login/")
        browser.find_element(By.ID, "id_username").send_keys("ann")
        browser.find_element(By.ID, "id_password").send_keys(PASSWORD + Keys.ENTER)
        wait_for(lambda: "Annotation projects" in browser.page_source, what="the project list")
        browser.get(f"{base}/annotate/{project.pk}/")
        wait_for(lambda: item_on_screen(browser), what="the hostile item")
        for view in ("formatted", "diff"):  # D switches between Markdown and the escaped word diff
            browser.save_screenshot(str(SCREENSHOTS / f"annotate-hostile-{view}.png"))
            with pytest.raises(NoAlertPresentException):
                browser.switch_to.alert.text  # noqa: B018
            assert browser.title != "pwned"
            injected = browser.execute_script(
                "return document.querySelectorAll('#bench script, #bench img, #bench [onerror]').length")
            assert injected == 0, view
            press(browser, "d")
        assert browser.find_element(By.CSS_SELECTOR, "#prompt strong").text == "bold"
        assert "Hamlet is a play by Shakespeare" in browser.find_element(By.ID, "bench").text
    finally:
        browser.quit()
