"""The real-Kafka test bed: brokers for the tests, the demo and the benchmark.

`open_broker()` / `obtain_broker()` pick a broker (KAFKA_BOOTSTRAP_SERVERS, then Docker via
testcontainers, then a local KRaft broker from Kafka's jars); `KRaftCluster(3)` is a local
3-node cluster whose nodes can be killed and restarted; `create_topic()` makes fresh topics.
"""

from testbed.base import Broker, BrokerError, BrokerUnavailable, NotSupported
from testbed.jars import KAFKA_VERSION
from testbed.kraft import KRaftCluster
from testbed.provider import ExternalBroker, obtain_broker, open_broker
from testbed.topics import create_topic, unique_topic_name

__all__ = [
    "KAFKA_VERSION",
    "Broker",
    "BrokerError",
    "BrokerUnavailable",
    "ExternalBroker",
    "KRaftCluster",
    "NotSupported",
    "create_topic",
    "obtain_broker",
    "open_broker",
    "unique_topic_name",
]
