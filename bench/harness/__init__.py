"""What every benchmark does the same way: statistics (``stats``), the machine it ran on and
what else used its CPUs (``machine``, ``cpu``), the databases (``databases``), the test cluster's
Pod watch and direct creates (``cluster``), profiles (``profile``), the command line (``cli``)
and the one Markdown report writer (``report``)."""
