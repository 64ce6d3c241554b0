// Map events Streamlit does not pass to Python (streamlit/streamlit#8824), read from plotly itself:
// * hover over a point of the explorer map -> a floating preview of that film (thumbnails come with `data`);
// * a click on a point in box/lasso mode or in 3-D (where st.plotly_chart reports no selection) -> the
//   trigger value `clicked` = the point's image id (customdata[0]); pan/zoom clicks already arrive as selections.
//   (3-D: plotly emits the click from its render loop; headless Chromium's software WebGL did not, so the
//   page does not promise 3-D clicks.)
export default function (component) {
  const { data, setTriggerValue, parentElement } = component;
  const thumbs = (data && data.thumbs) || {};
  const tip = document.createElement("div");
  tip.className = "cxr-hover-preview";
  tip.setAttribute("data-testid", "cxrHoverPreview");
  tip.style.cssText = "position:fixed;display:none;z-index:1000;pointer-events:none;background:#fff;" +
    "border:1px solid #999;border-radius:4px;padding:4px;box-shadow:0 2px 8px rgba(0,0,0,.3);font:12px sans-serif";
  const img = document.createElement("img");
  img.style.cssText = "display:block;width:160px;height:160px;object-fit:contain;background:#000";
  const cap = document.createElement("div");
  tip.appendChild(img);
  tip.appendChild(cap);
  document.body.appendChild(tip);
  const hooked = new WeakSet();
  const idOf = (ev) => {
    const p = ev && ev.points && ev.points[0];
    const cd = p && p.customdata;
    return cd && cd.length ? String(cd[0]) : null;
  };
  function hook() {
    for (const gd of document.querySelectorAll('[data-testid="stPlotlyChart"] .js-plotly-plot')) {
      if (hooked.has(gd) || typeof gd.on !== "function") continue;
      hooked.add(gd);
      gd.on("plotly_hover", (ev) => {
        const id = idOf(ev);
        if (!id || !thumbs[id]) return;
        img.src = thumbs[id];
        cap.textContent = id;
        const x = ev.event ? ev.event.clientX : 0, y = ev.event ? ev.event.clientY : 0;
        tip.style.left = Math.min(x + 16, window.innerWidth - 180) + "px";
        tip.style.top = Math.max(y - 190, 4) + "px";
        tip.style.display = "block";
        tip.setAttribute("data-image-id", id);
      });
      gd.on("plotly_unhover", () => { tip.style.display = "none"; });
      gd.on("plotly_click", (ev) => {
        const id = idOf(ev);
        if (!id) return;
        const p = ev.points[0];
        const mode = gd._fullLayout ? gd._fullLayout.dragmode : (gd.layout || {}).dragmode;
        const threeD = p.data && p.data.type === "scatter3d";
        if (threeD || mode === "select" || mode === "lasso") setTriggerValue("clicked", id);
      });
    }
  }
  hook();
  const timer = setInterval(hook, 250);  // a new figure is a new plot: hook it as soon as it exists
  return () => { clearInterval(timer); tip.remove(); };
}
