"""Where the benches read the project's shared data sets (:mod:`s2s.testing.shared_data`)."""

from s2s.testing.shared_data import shared_data

SHARED_DATA = shared_data(__file__)
