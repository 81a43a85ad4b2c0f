"""Helpers for the back-office tests: staff accounts, a logged-in httpx client, the page's CSRF token."""

from __future__ import annotations

import re

import httpx

from tests.loyalty_support import ok

PASSWORD = "correct horse battery"


def add_staff(admin: httpx.Client, store_id: str, username: str, role: str, password: str = PASSWORD) -> None:
    ok(admin.post(f"/v1/stores/{store_id}/staff", json={"username": username, "password": password,
                                                        "role": role}), 201)


def logged_in(base_url: str, username: str, password: str = PASSWORD) -> httpx.Client:
    """A browser-like client after the login form: the session cookie in its jar."""
    client = httpx.Client(base_url=base_url, timeout=30)
    form = client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
    assert token is not None
    answer = client.post("/login", data={"username": username, "password": password,
                                         "csrf_token": token.group(1)})
    assert answer.status_code == 303, answer.text
    return client


def csrf_of(client: httpx.Client, page: str) -> str:
    found = re.search(r'<meta name="csrf-token" content="([^"]+)"', client.get(page).text)
    assert found is not None
    return found.group(1)
