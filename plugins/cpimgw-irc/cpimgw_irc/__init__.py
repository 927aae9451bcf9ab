"""cpimgw-irc: an IRC adapter for cpimgw, shipped as a separate plugin distribution.

The gateway joins an IRC network as one bot client (RFC 2812 §3.1
registration, IRCv3 capability negotiation) and bridges private messages
(RFC 2812 §3.3 PRIVMSG/NOTICE <-> RFC 3860 ``message``) and presence
(AWAY, MONITOR, USERHOST, QUIT/JOIN <-> RFC 3859/3863) to the other
networks of the gateway.  Modules:

- :mod:`cpimgw_irc.wire` -- IRC lines: IRCv3 message tags, RFC 2812 §2.3
  framing and limits, formatting codes, CTCP, splitting;
- :mod:`cpimgw_irc.mapping` -- pure IRC <-> CPIM rules (addresses, messages,
  presence documents);
- :mod:`cpimgw_irc.codec` -- the ``irc`` ``INativeCodec``, its fidelity
  profile and corpus;
- :mod:`cpimgw_irc.adapter` -- the ``IAdapter`` (the bot connection).

Registered with Twisted's plugin system by ``twisted/plugins/cpimgw_irc_plugin.py``.
"""

__version__ = "0.1.0"
