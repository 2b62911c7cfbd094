"""OGC service exceptions: the project's errors as WMS 1.1.1 / 1.3.0 ServiceExceptionReports and
OWS 1.1 ExceptionReports (WMTS), with the standard exception codes."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass

from gisserver.errors import GISError, InvalidParameter, NotFound, UnknownCRS

WMS_EXCEPTION_TYPES = {
    "1.3.0": "text/xml",
    "1.1.1": "application/vnd.ogc.se_xml",
}


@dataclass
class OWSException(Exception):
    code: str
    message: str
    locator: str | None = None
    status: int = 400

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


def missing(parameter: str) -> OWSException:
    return OWSException("MissingParameterValue", f"parameter {parameter} is required", parameter)


def from_error(exc: Exception, version: str = "1.3.0") -> OWSException:
    """Map any project error onto an OGC exception code (never leaks internals)."""
    if isinstance(exc, OWSException):
        if exc.code == "InvalidCRS" and version == "1.1.1":
            exc.code = "InvalidSRS"
        return exc
    if isinstance(exc, UnknownCRS):
        return OWSException("InvalidCRS" if version != "1.1.1" else "InvalidSRS", exc.message, "CRS")
    if isinstance(exc, InvalidParameter):
        code = exc.details.get("code", "InvalidParameterValue")
        return OWSException(code, exc.message, exc.parameter)
    if isinstance(exc, NotFound):
        return OWSException("LayerNotDefined", exc.message, "LAYERS", status=404)
    if isinstance(exc, GISError):
        status = exc.status if exc.status < 500 else 500
        return OWSException("NoApplicableCode", exc.message, status=status)
    return OWSException("NoApplicableCode", "an internal error occurred", status=500)


def wms_exception_report(exc: OWSException, version: str) -> tuple[bytes, str]:
    if version == "1.1.1":
        root = ET.Element("ServiceExceptionReport", version="1.1.1")
        doctype = ('<!DOCTYPE ServiceExceptionReport SYSTEM '
                   '"http://schemas.opengis.net/wms/1.1.1/exception_1_1_1.dtd">\n')
    else:
        root = ET.Element("ServiceExceptionReport", version="1.3.0", xmlns="http://www.opengis.net/ogc")
        root.set("xmlns:xsi", "http://www.w3.org/2001/XMLSchema-instance")
        root.set("xsi:schemaLocation",
                 "http://www.opengis.net/ogc http://schemas.opengis.net/wms/1.3.0/exceptions_1_3_0.xsd")
        doctype = ""
    el = ET.SubElement(root, "ServiceException", code=exc.code)
    if exc.locator:
        el.set("locator", exc.locator)
    el.text = exc.message
    body = '<?xml version="1.0" encoding="UTF-8"?>\n' + doctype + ET.tostring(root, encoding="unicode")
    return body.encode(), WMS_EXCEPTION_TYPES["1.1.1" if version == "1.1.1" else "1.3.0"]


def ows_exception_report(exc: OWSException, version: str = "1.0.0") -> tuple[bytes, str]:
    ows = "http://www.opengis.net/ows/1.1"
    root = ET.Element(f"{{{ows}}}ExceptionReport", version=version)
    root.set("{http://www.w3.org/XML/1998/namespace}lang", "en")
    el = ET.SubElement(root, f"{{{ows}}}Exception", exceptionCode=exc.code)
    if exc.locator:
        el.set("locator", exc.locator)
    ET.SubElement(el, f"{{{ows}}}ExceptionText").text = exc.message
    ET.register_namespace("ows", ows)
    body = '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode")
    return body.encode(), "application/xml"
