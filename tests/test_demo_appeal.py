"""`mailer demo` shows the whole appeal without bothering anyone with warnings, and a
Vipps link on a host that is not Vipps' own is flagged when mailer starts."""

from __future__ import annotations

import email
import email.policy
from pathlib import Path

import pytest

from mailer.testing import TEST_SECRET_KEY, run_mailer

SHIPPED = Path(__file__).parents[1] / "config" / "mailer.toml"
ELSEWHERE = "https://vipps.example/donations/557320"
WARNING = "warning: [donation] vipps_link is on vipps.example, not qr.vipps.no"


def test_the_demo_shows_both_buttons_and_both_codes_and_warns_of_nothing(tmp_path):
    result = run_mailer(tmp_path, "demo", MAILER_SECRET_KEY=TEST_SECRET_KEY)
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", "no warning about the demo's own example links"
    assert "Appeal: links on example hosts (dawatmedia.example, vipps.example)" in result.stdout
    preview = (tmp_path / "var" / "preview.html").read_text(encoding="utf-8")
    assert ">Donate</a>" in preview and ">Give with Vipps</a>" in preview
    assert preview.count('<img src="data:image/png;base64,') == 2, "the Vipps and EPC codes"
    assert f"{ELSEWHERE}?reference=" in preview
    (first, *_others) = sorted((tmp_path / "var" / "maildir" / "new").iterdir())
    message = email.message_from_bytes(first.read_bytes(), policy=email.policy.default)
    text = message.get_body(("plain",)).get_content()
    assert "Donate: " in text and "Give with Vipps: " in text
    assert "QR code: give with Vipps (in the HTML version)" in text


def test_a_demo_keeps_the_links_the_config_sets(tmp_path):
    own = "https://qr.vipps.no/donations/557320"
    result = run_mailer(
        tmp_path, "demo", MAILER_SECRET_KEY=TEST_SECRET_KEY, MAILER_DONATION_VIPPS_LINK=own
    )
    assert result.returncode == 0 and result.stderr == ""
    assert "stand in for [donation] url," in result.stdout, "only the donate page is an example"
    preview = (tmp_path / "var" / "preview.html").read_text(encoding="utf-8")
    assert f"{own}?reference=" in preview and "vipps.example" not in preview


@pytest.mark.parametrize("how", ["environment", "config file"])
def test_a_vipps_link_off_vipps_own_host_is_flagged_at_start(tmp_path, how):
    if how == "environment":
        result = run_mailer(tmp_path, "subscribers", "list", MAILER_DONATION_VIPPS_LINK=ELSEWHERE)
    else:
        config = tmp_path / "mailer.toml"
        shipped = SHIPPED.read_text(encoding="utf-8")
        assert 'vipps_link = ""\n' in shipped
        config.write_text(shipped.replace('vipps_link = ""\n', f'vipps_link = "{ELSEWHERE}"\n'))
        result = run_mailer(tmp_path, "--config", str(config), "subscribers", "list")
    assert result.returncode == 0, result.stderr
    assert WARNING in result.stderr and WARNING not in result.stdout


def test_the_shipped_config_and_a_link_on_vipps_host_start_without_a_warning(tmp_path):
    shipped = run_mailer(tmp_path, "--config", str(SHIPPED), "subscribers", "list")
    assert shipped.returncode == 0 and "warning" not in shipped.stderr
    vipps = run_mailer(
        tmp_path,
        "subscribers",
        "list",
        MAILER_DONATION_VIPPS_LINK="https://qr.vipps.no/donations/557320",
    )
    assert vipps.returncode == 0 and "warning" not in vipps.stderr
