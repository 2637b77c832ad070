"""The Outlook / Microsoft 365 calendar provider (MSAL + Microsoft Graph)."""

from integrations.outlook.provider import OutlookProvider

__all__ = ["OutlookProvider"]
