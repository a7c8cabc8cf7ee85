// /docs: Swagger UI on this service's OpenAPI document. A file of its own, not an inline script, so the page's
// Content-Security-Policy allows only scripts from this origin; no validator badge (it would call another site).
'use strict';
window.addEventListener('DOMContentLoaded', () => {
  const root = document.getElementById('swagger-ui');
  window.ui = window.SwaggerUIBundle({
    url: root.dataset.url,
    domNode: root,
    validatorUrl: null,
    deepLinking: true,
    persistAuthorization: false,
    tryItOutEnabled: false,
  });
});
