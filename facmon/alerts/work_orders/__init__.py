"""Work orders: opened by hand, by alarms and by maintenance plans; their lifecycle and response targets."""
