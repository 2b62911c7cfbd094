"""Analytic solutions of the shallow-water equations used to verify the solver (SWASHES, Delestre et al. 2013).

* Ritter (1892): frictionless dam break onto a dry bed;
* Stoker (1957): frictionless dam break onto a wet bed (rarefaction, plateau, bore);
* Thacker (1981): planar water surface oscillating in a paraboloid bowl (moving wet/dry front);
* uniform flow: normal depth of a wide channel with Manning friction.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import brentq

G = 9.81


def ritter(x: np.ndarray, t: float, h_left: float, x_dam: float = 0.0, g: float = G):
    """Depth and velocity of the dry dam break at time t > 0."""
    c0 = np.sqrt(g * h_left)
    xi = (np.asarray(x, dtype=float) - x_dam) / t
    h = np.where(xi <= -c0, h_left, (2.0 * c0 - xi) ** 2 / (9.0 * g))
    h = np.where(xi >= 2.0 * c0, 0.0, h)
    u = np.where((xi > -c0) & (xi < 2.0 * c0), 2.0 / 3.0 * (xi + c0), 0.0)
    return h, u


def stoker_middle_celerity(h_left: float, h_right: float, g: float = G) -> float:
    """Celerity c_m = sqrt(g h_m) of the plateau between rarefaction and bore."""
    cl, cr2 = np.sqrt(g * h_left), g * h_right

    def f(cm):
        return -8.0 * cr2 * cm**2 * (cl - cm) ** 2 + (cm**2 - cr2) ** 2 * (cm**2 + cr2)

    return brentq(f, np.sqrt(cr2) * (1 + 1e-12), cl * (1 - 1e-12), xtol=1e-14)


def stoker(x: np.ndarray, t: float, h_left: float, h_right: float, x_dam: float = 0.0, g: float = G):
    """Depth and velocity of the wet dam break at time t > 0."""
    cl = np.sqrt(g * h_left)
    cm = stoker_middle_celerity(h_left, h_right, g)
    hm = cm**2 / g
    shock = 2.0 * cm**2 * (cl - cm) / (cm**2 - g * h_right)
    xi = (np.asarray(x, dtype=float) - x_dam) / t
    h = np.full(xi.shape, h_right)
    u = np.zeros(xi.shape)
    fan = (xi > -cl) & (xi <= 2.0 * cl - 3.0 * cm)
    plateau = (xi > 2.0 * cl - 3.0 * cm) & (xi <= shock)
    h[xi <= -cl] = h_left
    h[fan] = 4.0 / (9.0 * g) * (cl - xi[fan] / 2.0) ** 2
    u[fan] = 2.0 / 3.0 * (xi[fan] + cl)
    h[plateau] = hm
    u[plateau] = 2.0 * (cl - cm)
    return h, u


def thacker_planar_bed(x: np.ndarray, y: np.ndarray, a: float, h0: float) -> np.ndarray:
    """Paraboloid bowl z = -h0 (1 - r^2 / a^2), centred on the origin."""
    return -h0 * (1.0 - (x**2 + y**2) / a**2)


def thacker_planar(x: np.ndarray, y: np.ndarray, t: float, a: float, h0: float, eta: float, g: float = G):
    """Depth and velocity of the planar surface rotating in the bowl (uniform velocity field).

    Surface eta(x, y, t) = eta h0 / a^2 (2 x cos wt + 2 y sin wt - eta), w = sqrt(2 g h0) / a,
    u = -eta w sin wt, v = eta w cos wt. The velocity is uniform, but the flux form's advection
    term div(q u) = u . grad(q) is not zero where the depth varies, so the local-inertial scheme
    (which drops it) matches only at small amplitude (Froude number ~ eta w / sqrt(g h0) << 1).
    """
    w = np.sqrt(2.0 * g * h0) / a
    surface = eta * h0 / a**2 * (2.0 * x * np.cos(w * t) + 2.0 * y * np.sin(w * t) - eta)
    h = np.maximum(surface - thacker_planar_bed(x, y, a, h0), 0.0)
    return h, -eta * w * np.sin(w * t), eta * w * np.cos(w * t)


def thacker_period(a: float, h0: float, g: float = G) -> float:
    return 2.0 * np.pi * a / np.sqrt(2.0 * g * h0)


def normal_depth(q: float, slope: float, n: float) -> float:
    """Normal depth (m) of a wide channel carrying q m2/s on bed slope S with Manning n: q = h^(5/3) S^(1/2) / n."""
    return (q * n / np.sqrt(slope)) ** 0.6
