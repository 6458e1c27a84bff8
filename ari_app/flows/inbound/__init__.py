"""The inbound hotline call, one module per phase: queue.py (waiting, distribution, the
callback offer), offer.py (agents' legs rung, answered, confirmed), bridge.py (the
conversation), voicemail.py (the deposit); call.py holds what they share, flow.py the
flow itself (its table, its lifecycle)."""

from ari_app.flows.inbound.call import InboundState, Leg
from ari_app.flows.inbound.flow import MAILBOX_FULL_SOUND, InboundFlow
from ari_app.flows.inbound.voicemail import GOODBYE_SOUND

__all__ = ["GOODBYE_SOUND", "MAILBOX_FULL_SOUND", "InboundFlow", "InboundState", "Leg"]
