"""The training run page in headless Chromium over real HTTP: a manager watches the loss curve
grow as the trainer logs steps, and reads the evaluation table and win rate when it ends."""

from pathlib import Path

import pytest
from selenium.webdriver.common.by import By

from corpus.models import RegisteredModel, Snapshot
from tests.e2e.conftest import wait_for
from tests.e2e.test_user_journey import chromium_driver
from training.models import TrainingMetric, TrainingRun
from winnow.roles import grant_role

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "var" / "screenshots"
PASSWORD = "a long test password"


@pytest.fixture
def running(transactional_db):
    base = RegisteredModel.objects.create(name="base", origin="local", path="/nonexistent")
    snapshot = Snapshot.objects.create(name="prefs", kind="preference", status="ready")
    run = TrainingRun.objects.create(name="<b>dpo</b>", method="dpo", mode="lora", base_model=base,
                                     snapshot=snapshot, config={}, status="running", stage="training",
                                     step=3, total_steps=6)
    for step, loss in ((1, 0.69), (2, 0.61), (3, 0.52)):
        TrainingMetric.objects.create(run=run, step=step, loss=loss)
    return run


def sign_in(browser, live_server, django_user_model, role):
    user = django_user_model.objects.create_user(username=role, password=PASSWORD)
    grant_role(user, role)
    browser.get(f"{live_server.url}/login/")
    browser.find_element(By.ID, "id_username").send_keys(role)
    browser.find_element(By.ID, "id_password").send_keys(PASSWORD + "\n")
    wait_for(lambda: "/login/" not in browser.current_url, what="signing in")


def curve_points(browser) -> int:
    return browser.execute_script(
        "const l = document.querySelector('#loss polyline');"
        "return l ? l.getAttribute('points').trim().split(' ').length : 0")


def test_the_loss_curve_grows_live_and_the_evaluation_appears(live_server, running, django_user_model):
    browser = chromium_driver()
    try:
        sign_in(browser, live_server, django_user_model, "manager")
        browser.get(f"{live_server.url}/training/")
        assert "prefs" in browser.page_source
        browser.get(f"{live_server.url}/training/{running.pk}/")
        wait_for(lambda: curve_points(browser) == 3, what="the first three points")
        assert "<b>dpo</b>" in browser.find_element(By.TAG_NAME, "h1").text  # shown, not rendered

        # The trainer logs more steps and finishes: the page follows without a reload.
        for step, loss in ((4, 0.45), (5, 0.41), (6, 0.38)):
            TrainingMetric.objects.create(run=running, step=step, loss=loss)
        TrainingRun.objects.filter(pk=running.pk).update(
            status="succeeded", step=6, win_rate=0.7,
            evaluation={"before": {"eval_loss": 0.69}, "after": {"eval_loss": 0.40},
                        "generation": {"prompts": 20, "wins": 9, "losses": 1, "ties": 10,
                                       "judge": {"kind": "rule", "rule": "max_sentences:3"}}})
        wait_for(lambda: curve_points(browser) == 6, timeout=20, what="the new points")
        wait_for(lambda: browser.find_element(By.ID, "winrate").text == "70%", what="the win rate")
        assert browser.find_element(By.ID, "steps").text == "6 / 6 steps"
        assert browser.find_element(By.ID, "bar").get_attribute("style") == "width: 100%;"
        rows = browser.find_elements(By.CSS_SELECTOR, "#evaluation tr")
        assert [r.text for r in rows[1:]] == ["eval_loss 0.6900 0.4000 -0.2900"]
        assert "20 held-out prompts" in browser.find_element(By.ID, "generation").text
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(str(SCREENSHOTS / "training-run.png"))
    finally:
        browser.quit()


@pytest.mark.parametrize("role, status", [("annotator", 403), ("manager", 200)])
def test_only_managers_see_run_pages(client, django_user_model, running, role, status):
    user = django_user_model.objects.create_user(username=role, password=PASSWORD)
    grant_role(user, role)
    client.force_login(user)
    assert client.get("/training/").status_code == status
    assert client.get(f"/training/{running.pk}/").status_code == status


def test_run_pages_ask_anonymous_visitors_to_sign_in(client, running):
    response = client.get(f"/training/{running.pk}/")
    assert response.status_code == 302 and response["Location"].startswith("/login/")
