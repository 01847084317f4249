// MathJax 3 set up for pymdownx.arithmatex (generic mode), served from this
// site (docs/js/mathjax/tex-svg.js, MathJax 3.2.2, Apache-2.0): the
// documentation renders its formulas without network access.
window.MathJax = {
  tex: {
    inlineMath: [["\\(", "\\)"]],
    displayMath: [["\\[", "\\]"]],
    processEscapes: true,
    processEnvironments: true,
  },
  options: {
    ignoreHtmlClass: ".*|",
    processHtmlClass: "arithmatex",
  },
};
