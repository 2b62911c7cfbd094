// Cursor coordinates in the city CRS, VN-2000 / TM-3 105°45' (EPSG:9210), with the official
// VN-2000 -> WGS84 parameters of Decision 05/2007/QĐ-BTNMT (the same definition as the server's
// gisserver.crs.CITY_PROJ4; EPSG's default operation would be ~0.8 m off).
import proj4 from "proj4";

export const CITY_PROJ4 =
  "+proj=tmerc +lat_0=0 +lon_0=105.75 +k=0.9999 +x_0=500000 +y_0=0 +ellps=WGS84 " +
  "+towgs84=-191.90441429,-39.30318279,-111.45032835,0.00928836,-0.01975479,0.00427372,0.252906278 " +
  "+units=m +no_defs";

proj4.defs("EPSG:9210", CITY_PROJ4);
const toCity = proj4("EPSG:4326", "EPSG:9210");

/** [easting, northing] in VN-2000 / TM-3 105°45' for a WGS84 lon/lat. */
export function lonLatToCity(lon, lat) {
  return toCity.forward([lon, lat]);
}

/** [lon, lat] in WGS84 for a VN-2000 / TM-3 105°45' easting/northing. */
export function cityToLonLat(x, y) {
  return toCity.inverse([x, y]);
}

export function formatCity([e, n]) {
  return `E ${e.toFixed(2)}  N ${n.toFixed(2)}`;
}

function dms(value, pos, neg) {
  const hemi = value >= 0 ? pos : neg;
  const v = Math.abs(value);
  const d = Math.floor(v);
  const mFull = (v - d) * 60;
  const m = Math.floor(mFull);
  const s = (mFull - m) * 60;
  return `${d}°${String(m).padStart(2, "0")}′${s.toFixed(2).padStart(5, "0")}″${hemi}`;
}

export function formatWgs84(lon, lat) {
  return `${lat.toFixed(6)}, ${lon.toFixed(6)} (${dms(lat, "N", "S")} ${dms(lon, "E", "W")})`;
}
