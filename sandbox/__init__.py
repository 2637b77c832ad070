"""Local stand-ins for the providers' services (Google, later Microsoft Graph and Zoom).

They speak the providers' wire protocols over loopback HTTP so the REAL client libraries can be
tested and benchmarked against them unchanged. Nothing here is imported by the product code.
"""
