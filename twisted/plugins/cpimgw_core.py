"""twistd plugin registrations of cpimgw's core codecs: ``cpim`` (RFC 3862) and ``pidf`` (RFC 3863).

They provide ``cpimgw.interfaces.INativeCodec`` and ``twisted.plugin.IPlugin``
and are found with ``getPlugins(INativeCodec)`` by ``cpimgw parse`` and
``cpimgw translate``, exactly like each adapter's codec.  This directory has
no ``__init__.py`` on purpose: it extends Twisted's ``twisted.plugins``.
"""

from cpimgw.codecs import CPIMCodec, PIDFCodec

cpim = CPIMCodec()
pidf = PIDFCodec()
