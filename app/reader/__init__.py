"""The PyArrow CSV block reader every job kind shares: blocks with exact line numbers, typed values out of text."""
