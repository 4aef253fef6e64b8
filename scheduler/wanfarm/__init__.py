"""The wanfarm policy: earliest finish on learned speed and memory, fair share and aging."""
