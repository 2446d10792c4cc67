"""``mask-guard run --preview``: the annotated frames in an OpenCV window (a development aid)."""
from __future__ import annotations

import logging
import os

log = logging.getLogger(__name__)

WINDOW = "mask-guard"


class Preview:
    def __init__(self) -> None:
        self.open = False

    def start(self) -> bool:
        """Open the window; False (with one error line) where there is no display or no GUI OpenCV."""
        import cv2

        if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            log.error("--preview needs a display (DISPLAY or WAYLAND_DISPLAY); running without the window")
            return False
        try:
            cv2.namedWindow(WINDOW, cv2.WINDOW_NORMAL)
        except cv2.error as exc:
            log.error("--preview: this OpenCV has no GUI (%s); use python3-opencv from apt or "
                      "opencv-python. Running without the window", str(exc).strip().splitlines()[-1])
            return False
        self.open = True
        return True

    def show(self, image, result, fps: float) -> bool:
        """Draw one frame; False when the user pressed q or Esc."""
        import cv2

        from .draw import annotate

        cv2.imshow(WINDOW, annotate(image, result, fps=fps))
        return (cv2.waitKey(1) & 0xFF) not in (ord("q"), 27)

    def close(self) -> None:
        if self.open:
            import cv2

            cv2.destroyAllWindows()
            self.open = False
