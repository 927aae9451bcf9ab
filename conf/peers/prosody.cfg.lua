-- Prosody 0.12 for the cpimgw walkthrough (README "Walkthrough: one conversation
-- across three networks") and the end-to-end tests (tests/e2e/).  Loopback only,
-- no TLS, no server-to-server: the XMPP network is the domain xmpp.localhost,
-- and the gateway attaches to it as the XEP-0114 external component
-- gw.localhost (conf/three-networks.toml, [adapters.xmpp]).
--
-- Start it from a scratch directory (the relative paths below resolve against
-- the current directory):
--   mkdir -p data certs
--   prosodyctl --config /path/to/conf/peers/prosody.cfg.lua register alice xmpp.localhost alicepw
--   prosody -F --config /path/to/conf/peers/prosody.cfg.lua
-- tests/e2e/peers.py uses this file as it is, replacing only the two ports.
run_as_root = true            -- CI runs as root; otherwise prosody runs as the invoking user
pidfile = "prosody.pid"
data_path = "data"
log = { { levels = { min = "info" }, to = "file", filename = "prosody.log" } }
certificates = "certs"

interfaces = { "127.0.0.1" }
c2s_ports = { 5222 }
c2s_interfaces = { "127.0.0.1" }
component_ports = { 5347 }
component_interfaces = { "127.0.0.1" }
s2s_ports = { }
c2s_direct_tls_ports = { }
http_ports = { }
https_ports = { }

modules_enabled = { "roster"; "saslauth"; "disco"; "ping"; "presence"; "message"; "posix"; }
modules_disabled = { "s2s"; "tls" }
c2s_require_encryption = false
allow_unencrypted_plain_auth = true
authentication = "internal_hashed"
storage = "internal"

VirtualHost "xmpp.localhost"

Component "gw.localhost"
  component_secret = "s3cret"
