"""A pickle payload for the security tests: loading it unsafely would create the folder ``marker``."""

import os


class Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))
