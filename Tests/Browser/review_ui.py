"""The review UI in a real headless Chromium (Debian's chromium and chromium-driver), driven by
Selenium: run by Tests/DaemonTests/BrowserTests.swift against a running `lockstep serve`.

Usage: review_ui.py BASE_URL RUN_ID ARTIFACTS_DIR, with the tokens in the environment
(ALICE_TOKEN: an approver of the run's environment; CAROL_TOKEN: a reviewer who is not) and
HOSTILE_MESSAGE, the run's tag message, holding markup that must be shown as text.

Exits 0 when every step held; otherwise prints the step that failed and exits 1. Screenshots of
the board and the run page are written to ARTIFACTS_DIR.
"""
import os
import sys
import time

from selenium import webdriver
from selenium.common.exceptions import NoAlertPresentException
from selenium.webdriver.chrome.service import Service
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait


def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1000",
                     "--disable-gpu", "--no-first-run", "--user-data-dir=" + os.environ["BROWSER_PROFILE"]):
        options.add_argument(argument)
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


def check(condition, what):
    if not condition:
        print("FAILED: " + what, flush=True)
        sys.exit(1)
    print("ok: " + what, flush=True)


def no_script_ran(driver):
    try:
        alert = driver.switch_to.alert
        text = alert.text
        alert.dismiss()
        return "an alert opened: " + text
    except NoAlertPresentException:
        return None


def arrived(driver, suffix, seconds=30):
    """Waits for a navigation a click started: a click returns before the next page is loaded."""
    try:
        WebDriverWait(driver, seconds).until(lambda d: d.current_url.endswith(suffix)
                                             and d.execute_script("return document.readyState") == "complete")
        return True
    except TimeoutException:
        return False


def sign_in(driver, base, token):
    driver.delete_all_cookies()
    driver.get(base + "/ui/signin")
    driver.find_element(By.NAME, "token").send_keys(token)
    driver.find_element(By.CSS_SELECTOR, "form.signin button").click()
    check(arrived(driver, "/ui/board"), "signed in, the board is shown (" + driver.current_url + ")")


def wait_for(driver, what, predicate, seconds=180):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.5)
        driver.refresh()
    check(False, what)


def main():
    base, run_id, artifacts = sys.argv[1], sys.argv[2], sys.argv[3]
    hostile = os.environ["HOSTILE_MESSAGE"]
    driver = browser()
    try:
        # A reviewer of another environment: no approve button, and markup from a tag is text.
        sign_in(driver, base, os.environ["CAROL_TOKEN"])
        driver.find_element(By.LINK_TEXT, "dev").click()
        check(arrived(driver, "/ui/environments/dev/tags"), "the environment's heading leads to its tags")
        check("dev/v1.0.0" in driver.find_element(By.TAG_NAME, "main").text, "the tags page lists the release tag")
        driver.get(base + "/ui/runs/" + run_id)
        check(hostile in driver.find_element(By.CSS_SELECTOR, "pre.tag-message").text, "the tag message is shown as text")
        check(no_script_ran(driver) is None, "no script from the tag message ran")
        check(not driver.find_elements(By.XPATH, "//main//script | //main//img"), "no script or img element in the page")
        check("awaiting_approval" in driver.find_element(By.TAG_NAME, "h1").text, "the run waits for approval")
        check("Merge feature-1" in driver.find_element(By.CSS_SELECTOR, "details.commit-message").text,
              "the merge commit's message is shown")
        check(not driver.find_elements(By.CSS_SELECTOR, "form.approve"), "carol sees no approve button")
        check(not driver.find_elements(By.CSS_SELECTOR, "form.reject"), "carol sees no reject form")

        # An approver: board → pending run → approve → applied.
        sign_in(driver, base, os.environ["ALICE_TOKEN"])
        driver.save_screenshot(os.path.join(artifacts, "board.png"))
        driver.find_element(By.CSS_SELECTOR, "div.pending a").click()
        check(arrived(driver, "/ui/runs/" + run_id), "the board's pending cell leads to the run")
        check(driver.find_elements(By.CSS_SELECTOR, "div.destroy") or "Plan" in driver.page_source, "the plan is on the page")
        driver.save_screenshot(os.path.join(artifacts, "run-awaiting-approval.png"))
        driver.find_element(By.CSS_SELECTOR, "form.approve button").click()
        check(arrived(driver, "/ui/runs/" + run_id),
              "after approving, the run page again (" + driver.current_url + ": " + driver.find_element(By.TAG_NAME, "main").text[:300] + ")")
        wait_for(driver, "the run to be applied and verified",
                 lambda: "verified" in driver.find_element(By.TAG_NAME, "h1").text)
        check("alice" in driver.find_element(By.CSS_SELECTOR, "ul.approvals").text, "alice's approval is listed")
        driver.save_screenshot(os.path.join(artifacts, "run-verified.png"))
        driver.get(base + "/ui/board")
        driver.save_screenshot(os.path.join(artifacts, "board-after.png"))
        check(no_script_ran(driver) is None, "no script ran anywhere")
    finally:
        driver.quit()


if __name__ == "__main__":
    main()
