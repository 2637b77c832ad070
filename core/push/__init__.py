"""Push channels: the provider's notification channels of each connection, and verifying their pings.

Provider-neutral: a Google ``events.watch`` channel (id, resource id, token) fits, and so does a
Graph subscription (id, resource, clientState). The token is a secret shared with the provider
only; it is stored encrypted through the keyring, bound to its channel.
"""

from core.push.models import PushChannel
from core.push.service import (
    STOPPED_GRACE,
    ChannelView,
    channels_of,
    extend_channel,
    forget_channel,
    live_channels,
    mark_stopped,
    new_channel_token,
    prune_stopped,
    record_channel,
    verify_ping,
)

__all__ = [
    "STOPPED_GRACE",
    "ChannelView",
    "PushChannel",
    "channels_of",
    "extend_channel",
    "forget_channel",
    "live_channels",
    "mark_stopped",
    "new_channel_token",
    "prune_stopped",
    "record_channel",
    "verify_ping",
]
