// A classifier's answer as a person reads it: the likeliest label, and every label's score as a bar
// (softmax) with its logit; each item keeps the exact logit in data-logit.

import { el } from "./dom.js";

export function showScores(prediction, list, logits, labels, when) {
  const top = Math.max(...logits);
  const weights = logits.map((logit) => Math.exp(logit - top));
  const total = weights.reduce((sum, weight) => sum + weight, 0);
  const best = logits.indexOf(top);
  const name = (index) => labels[index] ?? String(index);
  prediction.textContent = `${name(best)}: ${((100 * weights[best]) / total).toFixed(1)}% ${when}`;
  prediction.dataset.label = name(best);
  list.replaceChildren(
    ...logits.map((logit, index) => {
      const bar = el("span", { class: "bar" });
      bar.style.setProperty("--share", String(weights[index] / total));
      return el(
        "li",
        { "data-label": name(index), "data-logit": String(logit), class: index === best ? "best" : undefined },
        el("span", { class: "label", text: name(index) }),
        bar,
        el("span", { class: "logit", text: logit.toFixed(3) }),
      );
    }),
  );
}
