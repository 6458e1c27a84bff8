"""Hotline: TeamDesk-style hotlines on Asterisk through ARI."""
