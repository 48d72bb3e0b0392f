"""Settings come from a PowerFL-style env file overlaid with the environment, with clear errors."""

from pathlib import Path

import pytest

from fedcore.settings import PartySettings, SettingsError, read_env_file

ENV = """\
# party 10000
export PARTY_ID=10000
DOMAIN=guest.example
INTERNAL_MQ_HOST=127.0.0.1
INTERNAL_MQ_TCP_PORT=9092
OTHER_PARTIES="20000,30000"
PARTY_MQ_HTTP_URL_20000=http://127.0.0.1:9371/
PARTY_MQ_HTTP_URL_30000=https://bridge.c.example  # trailing comment
EXPOSE_MQ_HTTP_PORT=9370
"""


def test_env_file_gives_party_kafka_and_peers(tmp_path: Path) -> None:
    path = tmp_path / "p.env"
    path.write_text(ENV)
    s = PartySettings.from_env(path, environ={})
    assert s.party_id == "10000"
    assert s.kafka_bootstrap == "127.0.0.1:9092"
    assert s.peers == {"20000": "http://127.0.0.1:9371", "30000": "https://bridge.c.example"}
    assert s.bridge_port == 9370


def test_platform_retries_default_to_two_and_may_be_turned_off(tmp_path: Path) -> None:
    path = tmp_path / "p.env"
    path.write_text(ENV)
    assert PartySettings.from_env(path, environ={}).platform_retries == 2
    off = PartySettings.from_env(path, environ={"PLATFORM_RETRIES": "0"})
    assert off.platform_retries == 0
    with pytest.raises(SettingsError, match="platform_retries"):
        PartySettings.from_env(path, environ={"PLATFORM_RETRIES": "-1"})


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    path = tmp_path / "p.env"
    path.write_text(ENV)
    s = PartySettings.from_env(path, environ={"INTERNAL_MQ_TCP_PORT": "19092"})
    assert s.kafka_bootstrap == "127.0.0.1:19092"


def test_floors_images_and_output_root_are_the_partys_own_and_secure_by_default(
    tmp_path: Path,
) -> None:
    path = tmp_path / "p.env"
    path.write_text(ENV)
    s = PartySettings.from_env(path, environ={"STATE_DIR": str(tmp_path / "state")})
    assert (s.floors.min_key_bits, s.floors.min_batch_rows, s.floors.max_bins) == (2048, 64, 64)
    assert s.step_images == () and s.outputs_dir == tmp_path / "state" / "output"
    s = PartySettings.from_env(
        path,
        environ={
            "FLOOR_MIN_BATCH_ROWS": "256",
            "FLOOR_MAX_BINS": "32",
            "STEP_IMAGES": "tessera/runtime:0.1.0, registry.example/algo:2",
            "OUTPUT_ROOT": "/srv/tessera-out",
        },
    )
    assert (s.floors.min_batch_rows, s.floors.max_bins) == (256, 32)
    assert s.step_images == ("tessera/runtime:0.1.0", "registry.example/algo:2")
    assert s.outputs_dir == Path("/srv/tessera-out")


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("DOMAIN=x\n", "PARTY_ID"),
        ("PARTY_ID=1\nOTHER_PARTIES=2\n", "PARTY_MQ_HTTP_URL_<id>"),
        ("PARTY_ID=1\nOTHER_PARTIES=2\nPARTY_MQ_HTTP_URL_2=ftp://x\n", "PARTY_MQ_HTTP_URL_2"),
        ("PARTY_ID=abc\n", "party_id"),
        ("PARTY_ID=1\nFLOW_SERVER_PORT=lots\n", "flow_server_port"),
        ("PARTY_ID=1\nFLOOR_MIN_KEY_BITS=512\n", "min_key_bits"),
    ],
)
def test_bad_settings_name_the_variable(tmp_path: Path, text: str, needle: str) -> None:
    path = tmp_path / "p.env"
    path.write_text(text)
    with pytest.raises(SettingsError, match=needle.replace("<", ".").replace(">", ".")):
        PartySettings.from_env(path, environ={})


def test_malformed_line_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "p.env"
    path.write_text("PARTY_ID=1\nthis is not an assignment\n")
    with pytest.raises(SettingsError, match=r"p\.env:2"):
        read_env_file(path)


def test_the_acceptance_policy_and_input_grants(tmp_path: Path) -> None:
    path = tmp_path / "p.env"
    path.write_text(
        ENV
        + "ACCEPT_POLICY=manual\nACCEPT_MANUAL_PEERS=30000\nACCEPT_COMPONENTS=intersect, scale\n"
        + "ACCEPT_ROLES=host\nGRANT_INPUT_PATHS_20000=/data/a /data/b.csv\n"
    )
    s = PartySettings.from_env(path, environ={})
    assert s.accept_policy == "manual"
    assert s.manual_peers == ["30000"]
    assert s.accept_components == ["intersect", "scale"]
    assert s.accept_roles == ["host"]
    assert s.input_grants == {"20000": [Path("/data/a"), Path("/data/b.csv")]}
    defaults = PartySettings.from_env(tmp_path / "p.env", environ={"ACCEPT_POLICY": "auto"})
    assert defaults.accept_policy == "auto"


@pytest.mark.parametrize(
    ("line", "needle"),
    [
        ("ACCEPT_POLICY=sometimes", "accept_policy"),
        ("ACCEPT_ROLES=boss", "accept_roles"),
        ("GRANT_INPUT_PATHS_40000=/data", "40000"),
    ],
)
def test_a_bad_policy_names_the_variable(tmp_path: Path, line: str, needle: str) -> None:
    path = tmp_path / "p.env"
    path.write_text(ENV + line + "\n")
    with pytest.raises(SettingsError, match=needle):
        PartySettings.from_env(path, environ={})
