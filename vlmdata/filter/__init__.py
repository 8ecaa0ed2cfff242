"""Stage 2: filter-urls. One rule for a URL (scheme, host, private addresses, Tor gateways),
used for the input lists and for every redirect a download follows."""
