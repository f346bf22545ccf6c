"""Rules: conditions over readings, evaluated purely, and the ISA-18.2 lifecycle of the alarms they raise."""
