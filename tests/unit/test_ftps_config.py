"""FTP.DATA statements: parsing, defaults, normalisation and errors that name file:line."""

import os

import pytest

from lab.errors import InputError
from lab.ftps.config import ClientConfig, ServerConfig, cipher_list, parse_ftpdata, parse_ftpdata_text


def test_server_file_with_comments_and_repeats(tmp_path):
    f = tmp_path / "FTP.DATA"
    f.write_text("; z/OS server settings\n"
                 "EXTENSIONS AUTH_TLS   ; explicit TLS\n"
                 "extensions size\n"
                 "SECURE_LOGIN VERIFY_USER\n"
                 "PASSIVEDATAPORTS (60000, 60100)\n"
                 "CIPHERSUITE SSL_AES_256_SHA\n"
                 "CIPHERSUITE SSL_AES_128_SHA\n"
                 "TLSRFCLEVEL cccnonotify\n"
                 "SECUREIMPLICITZOS FALSE\n"
                 "CERTUSERMAP alice alice\n"
                 "\n")
    cfg = parse_ftpdata(f)
    assert isinstance(cfg, ServerConfig)
    assert cfg.EXTENSIONS == {"AUTH_TLS", "SIZE"}
    assert cfg.SECURE_LOGIN == "VERIFY_USER"
    assert cfg.PASSIVEDATAPORTS == (60000, 60100)
    assert cfg.CIPHERSUITE == ("SSL_AES_256_SHA", "SSL_AES_128_SHA")
    assert cfg.TLSRFCLEVEL == "CCCNONOTIFY"
    assert cfg.SECUREIMPLICITZOS is False
    assert cfg.CERTUSERMAP == {"alice": "alice"}


def test_defaults_are_zos_except_the_documented_lab_ones():
    s, c = ServerConfig(), ClientConfig()
    assert (s.SECURE_FTP, s.SECURE_DATACONN, s.PASSIVEDATACONN, s.TLSPORT, s.SECUREIMPLICITZOS) == \
        ("ALLOWED", "CLEAR", "UNRESTRICTED", 990, True)
    assert s.TLSRFCLEVEL == "RFC4217" and "AUTH_TLS" in s.EXTENSIONS
    assert (c.EPSV4, c.FWFRIENDLY, c.PASSIVEIGNOREADDR, c.SECURE_HOSTNAME) == (False, False, False, "OPTIONAL")
    assert c.DATACONNTIME == 2.0


def test_every_problem_is_reported_with_its_line(tmp_path):
    f = tmp_path / "bad.data"
    f.write_text("TLSRFCLEVEL BOGUS\nPASSIVEDATAPORTS (100,200)\nEPSV4 TRUE\nNOSUCH 1\nPASSIVEDATACONN REDIRECT\n"
                 "SECURE_FTP\nTLSPORT 70000\nCIPHERSUITE SSL_RC4_SHA\nCIPHERSUITE SSL_DES_SHA\nCIPHERSUITE SSL_NULL_MD5\n"
                 "TLSPORT 21\n")
    with pytest.raises(InputError) as err:
        parse_ftpdata(f)
    text = str(err.value)
    for line, word in [(1, "TLSRFCLEVEL"), (2, "1024"), (3, "client statement"), (4, "unknown statement NOSUCH"),
                       (5, "REDIRECT"), (6, "missing value"), (7, "70000"), (8, "OpenSSL 3 no longer offers"),
                       (9, "single DES"), (10, "no encryption"), (11, "given twice")]:
        assert f"{f}:{line}:" in text and word in text, (line, word, text)
    assert len(err.value.problems) == 11


def test_client_side_statements(tmp_path):
    cfg = parse_ftpdata_text("SECURE_MECHANISM TLS\nEPSV4 TRUE\nFWFRIENDLY TRUE\nPASSIVEIGNOREADDR TRUE\n"
                             "SECURE_HOSTNAME REQUIRED\nCCCNOOP TRUE\nKEYRING *AUTH*/*\n", side="client")
    assert isinstance(cfg, ClientConfig)
    assert cfg.SECURE_MECHANISM == "TLS" and cfg.EPSV4 and cfg.FWFRIENDLY and cfg.PASSIVEIGNOREADDR
    assert cfg.KEYRING == "*AUTH*/*" and cfg.CCCNOOP
    with pytest.raises(InputError, match="server statement"):
        parse_ftpdata_text("PASSIVEDATAPORTS (60000,60100)", side="client", source="c.data")


def test_from_dict_as_the_topology_gives_it():
    cfg = ServerConfig.from_dict({"PASSIVEDATAPORTS": "(60000,60100)", "portcommandport": "nolowports"})
    assert cfg.PASSIVEDATAPORTS == (60000, 60100) and cfg.PORTCOMMANDPORT == "NOLOWPORTS"
    with pytest.raises(InputError, match="topo.yaml: FOO: unknown statement"):
        ServerConfig.from_dict({"FOO": 1}, source="topo.yaml")
    with pytest.raises(InputError, match="TLSPORT"):
        ServerConfig(TLSPORT="x")


def test_updated_validates_and_keeps_the_rest():
    base = ClientConfig(EPSV4=True)
    new = base.updated(fwfriendly="TRUE")
    assert new.EPSV4 and new.FWFRIENDLY and not base.FWFRIENDLY
    with pytest.raises(InputError):
        base.updated(EPSV4="maybe")


def test_cipher_names_map_to_openssl():
    assert cipher_list([]) == (None, None)
    assert cipher_list(["SSL_AES_128_SHA", "SSL_3DES_SHA"]) == ("AES128-SHA:DES-CBC3-SHA", "")
    legacy, modern = cipher_list(["TLS_AES_128_GCM_SHA256", "ECDHE-RSA-AES128-GCM-SHA256"])
    assert legacy == "ECDHE-RSA-AES128-GCM-SHA256" and modern == "TLS_AES_128_GCM_SHA256"
    with pytest.raises(InputError, match="neither a z/OS CIPHERSUITE name"):
        ServerConfig(CIPHERSUITE=["NOT-A-CIPHER"])


def test_unreadable_file_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="no such FTP.DATA file"):
        parse_ftpdata(tmp_path / "missing")


@pytest.mark.timeout(10)
def test_ftpdata_must_be_a_small_regular_utf8_file(tmp_path):
    """/dev/zero made memory grow until MemoryError; a FIFO hung the command (issue 10, item 13)."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    (tmp_path / "latin1").write_bytes(b"SECURE_FTP ALLOWED\n; caf\xe9\n")
    for path, why in (("/dev/zero", "not a regular file"), (fifo, "not a regular file"),
                      (tmp_path, "is a directory"), (tmp_path / "latin1", "not UTF-8")):
        with pytest.raises(InputError, match=why) as err:
            parse_ftpdata(path)
        assert str(path) in str(err.value)
    assert "latin1:2" in str(pytest.raises(InputError, parse_ftpdata, tmp_path / "latin1").value)


def test_to_dict_is_json_and_round_trips():
    import json
    cfg = ServerConfig(PASSIVEDATAPORTS=(60000, 60100), CIPHERSUITE=["SSL_AES_128_SHA"], CERTUSERMAP={"a": "b"})
    data = json.loads(json.dumps(cfg.to_dict()))
    assert ServerConfig.from_dict(data) == cfg


@pytest.mark.parametrize("value", ["1_000", "\u0669\u0669\u0660", "9\u00b2"])
def test_numbers_are_plain_ascii_decimals(value):
    """int() takes `1_000` and Arabic-Indic digits; an FTP.DATA file does not."""
    with pytest.raises(InputError, match="is not a number"):
        parse_ftpdata_text(f"TLSPORT {value}\n")
