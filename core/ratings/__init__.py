"""Alliance ratings after a session, the real end of its call, and licensed measure text."""

from core.ratings.measures import (
    ItemText,
    LicensedMeasure,
    MeasureFileError,
    licensed_measure,
    load_licensed_measure,
    parse_measure_file,
    remove_licensed_measure,
)
from core.ratings.service import (
    BUILTIN_MEASURE,
    COMMENT_LIMIT,
    ITEMS,
    LICENSED_MEASURE,
    InvalidRating,
    RatingRecord,
    call_times,
    get_rating,
    list_client_ratings,
    parse_score,
    read_comment,
    record_session_end,
    submit_rating,
)

__all__ = [
    "BUILTIN_MEASURE",
    "COMMENT_LIMIT",
    "ITEMS",
    "LICENSED_MEASURE",
    "InvalidRating",
    "ItemText",
    "LicensedMeasure",
    "MeasureFileError",
    "RatingRecord",
    "call_times",
    "get_rating",
    "licensed_measure",
    "list_client_ratings",
    "load_licensed_measure",
    "parse_measure_file",
    "parse_score",
    "read_comment",
    "record_session_end",
    "remove_licensed_measure",
    "submit_rating",
]
