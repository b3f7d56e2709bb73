"""The media store over HTTP: ``/media/<sha256>`` for logged-in staff allowed to view logs.

Anyone else is sent to the admin login (anonymous) or gets a 404 (logged in without the
permission), exactly as for a hash that does not exist: the answer never tells whether a
medium is stored. Files are served with their sniffed type, ``nosniff``, and as downloads
unless they are raster images.
"""

from __future__ import annotations

import re

from django.contrib.auth.views import redirect_to_login
from django.http import FileResponse, Http404, HttpRequest, HttpResponseBase

from requestlog.media import INLINE_TYPES, media_path, media_storage
from requestlog.models import MediaObject

VIEW_PERMISSION = "requestlog.view_requestlog"
_SHA256 = re.compile(r"[0-9a-f]{64}")


def media_view(request: HttpRequest, sha256: str) -> HttpResponseBase:
    user = request.user
    if not user.is_authenticated:
        return redirect_to_login(request.get_full_path(), login_url="/admin/login/")
    if not (user.is_active and user.is_staff and user.has_perm(VIEW_PERMISSION)):
        raise Http404
    if not _SHA256.fullmatch(sha256):
        raise Http404
    medium = MediaObject.objects.filter(sha256=sha256).first()
    if medium is None:
        raise Http404
    try:
        handle = media_storage().open(media_path(sha256), "rb")
    except (FileNotFoundError, OSError) as exc:
        raise Http404 from exc
    inline = medium.content_type in INLINE_TYPES
    response = FileResponse(
        handle,
        content_type=medium.content_type,
        as_attachment=not inline,
        filename=f"{sha256[:16]}",
    )
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = "default-src 'none'; sandbox"
    response["Cache-Control"] = "private, max-age=3600"
    return response
