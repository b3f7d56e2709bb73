// The provider credential form shows the fields the chosen provider takes. Display only: the
// server checks every field whatever is shown (accounts.services.provider_credential_clean).
"use strict";
(function () {
    const fieldsOf = {
        anthropic: ["secret", "endpoint_url"],
        openai: ["secret", "endpoint_url"],
        gemini: ["secret", "endpoint_url"],
        ollama: ["endpoint_url"],
        generic: ["name", "secret", "endpoint_url"],
        bedrock: ["secret", "endpoint_url", "region", "api_mode", "fallback_model"],
    };
    const optional = ["name", "secret", "endpoint_url", "region", "api_mode", "fallback_model"];

    function update(select) {
        const shown = fieldsOf[select.value];
        for (const name of optional) {
            const row = document.querySelector(".form-row.field-" + name);
            if (row === null) {
                continue;
            }
            // Unknown provider (nothing chosen yet): show everything.
            const hidden = shown !== undefined && !shown.includes(name);
            // A field with an error stays visible, so that the error can be read.
            row.hidden = hidden && row.querySelector(".errorlist") === null;
        }
        // A section left without a visible field goes too (the "Bedrock only" one).
        for (const fieldset of document.querySelectorAll("fieldset.module")) {
            const rows = Array.from(fieldset.querySelectorAll(".form-row"));
            fieldset.hidden = rows.length > 0 && rows.every((row) => row.hidden);
        }
    }

    document.addEventListener("DOMContentLoaded", function () {
        const select = document.getElementById("id_provider");
        if (select === null) {
            return;
        }
        select.addEventListener("change", function () {
            update(select);
        });
        update(select);
    });
})();
