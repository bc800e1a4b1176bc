"""The MQTT bridge (off by default): camera events published to an MQTT broker under a topic prefix,
with a retained status per camera and an availability topic, as Home Assistant expects.

    messages.py  event -> (topic, payload, retain): pure
    bridge.py    the bounded queue and the connection (aiomqtt), reconnecting
    setup.py     options and TLS from the config's `mqtt` section
"""

from .bridge import BridgeStats, BrokerOptions, MqttBridge
from .messages import OFFLINE, ONLINE, MqttMessage, Routing
from .setup import broker_options, routing

__all__ = ("MqttBridge", "BrokerOptions", "BridgeStats", "MqttMessage", "Routing", "ONLINE", "OFFLINE",
           "broker_options", "routing")
